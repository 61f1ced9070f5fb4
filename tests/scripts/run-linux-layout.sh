#!/usr/bin/env bash
# Where scripts/run-linux has QEMU load the guest's kernel, for RAM sizes from
# the least that fits to 8 GiB and kernels and initramfs of several sizes:
# checked against what is in RAM then (the hyp and the shim at the bottom,
# QEMU's initramfs and device tree, the hyp's carve-out at the top) and
# against the 256 MiB the shim must still find for the guest; too little RAM
# is refused. Also the memory sizes scripts/run-linux accepts. (The boot test
# linux_guest_reaches_user_space_in_both_vm_types boots one at 512 MiB.)
#   tests/scripts/run-linux-layout.sh    (scripts/test runs it)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh

failures=0
fail() {
    echo "FAILED: $*" >&2
    failures=$((failures + 1))
}

mib=$((1 << 20))
base=$((0x40000000))
# Overlap of [a, a_end) and [b, b_end).
overlaps() { [ "$1" -lt "$4" ] && [ "$3" -lt "$2" ]; }

checked=0
for kernel in $((33 * mib)) $((90 * mib)) $((150 * mib)); do
    for initrd in $((1 * mib)) $((24 * mib)); do
        least=$(linux_guest_min_ram_mib "$kernel" "$initrd")
        for ram in $((least - 2)) "$least" 512 768 1024 2048 4096 8192; do
            [ "$ram" -ge "$least" ] || {
                if linux_guest_kernel_address "$ram" "$kernel" "$initrd" >/dev/null; then
                    fail "$ram MiB accepted for a $((kernel / mib)) MiB kernel, below the least ($least MiB)"
                fi
                continue
            }
            what="RAM $ram MiB, kernel $((kernel / mib)) MiB, initramfs $((initrd / mib)) MiB"
            if ! address=$(linux_guest_kernel_address "$ram" "$kernel" "$initrd"); then
                fail "$what: no address, though the least is $least MiB"
                continue
            fi
            address=$((address))
            end=$((address + kernel))
            ram_end=$((base + ram * mib))
            half=$((ram / 2 < 128 ? ram / 2 : 128))
            initrd_start=$((base + half * mib))
            # The initramfs, then QEMU's device tree (at most 1 MiB) at the next
            # 2 MiB boundary (hw/arm/boot.c).
            initrd_end=$(((initrd_start + initrd + 2 * mib - 1) / (2 * mib) * (2 * mib) + mib))
            # The hyp's pool as hyp/src/boot.rs sizes it: 8 MiB, a 4-byte page
            # record per page, and host stage-2 tables (a page per 2 MiB and per
            # 1 GiB, plus 4), twice over with an SMMU; 2 MiB aligned, at the top.
            pages=$((ram * mib / 4096))
            pool=$((8 * mib + pages * 4 + 2 * (pages / 512 + pages / 262144 + 5) * 4096))
            pool_start=$((ram_end - (pool + 2 * mib - 1) / (2 * mib) * (2 * mib)))
            [ $((address % (2 * mib))) -eq 0 ] || fail "$what: $address is not 2 MiB aligned"
            [ "$address" -ge $((base + 16 * mib)) ] || fail "$what: the kernel is among the hyp and the shim"
            [ "$end" -le "$pool_start" ] || fail "$what: the kernel reaches the hyp's carve-out"
            if overlaps "$address" "$end" "$initrd_start" "$initrd_end"; then
                fail "$what: the kernel overlaps the initramfs or QEMU's device tree"
            fi
            # The shim's 256 MiB: the highest 2 MiB-aligned range clear of both.
            guest_end=$(((pool_start) / (2 * mib) * (2 * mib)))
            while [ $((guest_end - 256 * mib)) -ge $((base + 16 * mib)) ]; do
                guest=$((guest_end - 256 * mib))
                if overlaps "$guest" "$guest_end" "$address" "$end"; then
                    guest_end=$((address / (2 * mib) * (2 * mib)))
                elif overlaps "$guest" "$guest_end" "$initrd_start" "$initrd_end"; then
                    guest_end=$((initrd_start / (2 * mib) * (2 * mib)))
                else
                    break
                fi
            done
            [ $((guest_end - 256 * mib)) -ge $((base + 16 * mib)) ] || fail "$what: no 256 MiB left for the guest"
            checked=$((checked + 1))
        done
    done
done
# Debian's 6.1 kernel (about 32 MiB) and the busybox initramfs need about 400 MiB.
least=$(linux_guest_min_ram_mib $((33 * mib)) $((1 * mib)))
if [ "$least" -lt 386 ] || [ "$least" -gt 420 ]; then
    fail "the least RAM for Debian's kernel is $least MiB, not about 400"
fi

for case in 512:512 512M:512 512m:512 2G:2048 1g:1024 size=1G,slots=2:1024; do
    got=$(size_in_mib "${case%%:*}") || got=refused
    [ "$got" = "${case##*:}" ] || fail "size ${case%%:*}: $got MiB, not ${case##*:}"
done
for size in 1.5G G 5x 12MG '' -1; do
    if got=$(size_in_mib "$size" 2>/dev/null); then
        fail "size '$size' accepted as $got MiB"
    fi
done

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s) in scripts/run-linux's layout" >&2
    exit 1
fi
echo "scripts/run-linux's layout: $checked placements checked, least RAM for Debian's kernel $least MiB" >&2
