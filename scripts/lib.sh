# Shared helpers of the scripts in this folder; source it, do not run it.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the constants are for the scripts that source this

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The host shim's target; the hyp's is HYP_TARGET (no FP/SIMD registers).
TARGET=aarch64-unknown-none
HYP_TARGET=aarch64-unknown-none-softfloat
IMAGE_DIR="$REPO_ROOT/target/image"

# The calling script as the user names it: scripts/NAME.
script_name() {
    echo "scripts/$(basename "$0")"
}

# Prints the calling script's usage: its header comment (the comment lines
# after the #! line), without the leading "# ".
print_usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

# Answers --help or -h anywhere in the arguments with the usage (exit 0):
# called first, so that neither reaches QEMU, whose own help would answer.
handle_help() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            --help | -h) print_usage; exit 0 ;;
        esac
    done
}

# An argument the script does not take: says which, and where the usage is (exit 2).
unknown_option() {
    echo "$(script_name): unknown option '$1' (usage: $(script_name) --help)" >&2
    exit 2
}

# Checks that option $1 got a value $2 that is a whole number (exit 2 if not).
need_number() {
    case "${2:-}" in
        '' | *[!0-9]*)
            echo "$(script_name): $1 needs a whole number, not '${2:-}' (usage: $(script_name) --help)" >&2
            exit 2 ;;
    esac
}

# Installs the toolchain of rust-toolchain.toml with its target and components
# (a no-op when they are there).
ensure_toolchain() {
    (cd "$REPO_ROOT" && rustup toolchain install >/dev/null 2>&1) || (cd "$REPO_ROOT" && rustup toolchain install)
}

# The LLVM tools of the pinned toolchain (component llvm-tools, see rust-toolchain.toml).
llvm_tool() {
    local sysroot host
    sysroot="$(cd "$REPO_ROOT" && rustc --print sysroot)"
    host="$(cd "$REPO_ROOT" && rustc -vV | sed -n 's/^host: //p')"
    echo "$sysroot/lib/rustlib/$host/bin/$1"
}

# Installs Debian package $2 when $1 (a command, or a file path) is missing:
# itself when root, otherwise it prints the command to run and fails.
ensure_debian_package() {
    local what="$1" package="$2"
    if command -v "$what" >/dev/null 2>&1 || [ -f "$what" ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        echo "$what not found: installing Debian's $package" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    else
        echo "$what not found; install it with: sudo apt-get install -y $package" >&2
        return 1
    fi
}

# Prints the name of Debian's current arm64 kernel package (linux-image-...),
# enabling the arm64 package architecture first if it is not.
debian_arm64_kernel_package() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        if [ "$(id -u)" != 0 ]; then
            echo "the arm64 package architecture is needed: sudo dpkg --add-architecture arm64 && sudo apt-get update" >&2
            return 1
        fi
        dpkg --add-architecture arm64
        apt-get update -qq >&2
    fi
    local package
    package=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[^:]*\).*/\1/p' | head -1)
    if [ -z "$package" ]; then
        apt-get update -qq >&2
        package=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/.*Depends: \(linux-image-[^:]*\).*/\1/p' | head -1)
    fi
    [ -n "$package" ] && echo "$package"
}

ensure_qemu() {
    ensure_debian_package qemu-system-aarch64 qemu-system-arm
}

# Debian's U-Boot for QEMU's arm64 virt board, for the boot test that loads
# hyp.img with booti.
UBOOT_QEMU_ARM64=/usr/lib/u-boot/qemu_arm64/u-boot.bin
ensure_uboot() {
    ensure_debian_package "$UBOOT_QEMU_ARM64" u-boot-qemu
}

# The QEMU command line of a default run (scripts/run, the boot tests), without -kernel.
qemu_default_args() {
    echo -M virt,virtualization=on,gic-version=3 -cpu max -m 1G -nographic -nic none \
        -semihosting -append hyp.exit=semihosting
}

# Boots the benchmark image (target/image/hyp-bench.img) on one CPU with
# -icount shift=0 and QEMU's per-instruction trace (-singlestep -d
# exec,nochain: one line per executed instruction), streamed through a fifo
# in $2 (a scratch folder) to `python3 -c "$3" FIFO ARGS...` (the remaining
# arguments), and stops the boot once the benchmark printed figure $1 (the
# trace ends a fraction of a second later). Fails with the boot's output if
# the figure never printed.
traced_bench_boot() {
    local figure="$1" work="$2" consumer="$3" reader qemu
    shift 3
    rm -f "$work/fifo" "$work/console"
    mkfifo "$work/fifo"
    python3 -c "$consumer" "$work/fifo" "$@" &
    reader=$!
    # shellcheck disable=SC2046
    timeout 1800 qemu-system-aarch64 $(qemu_default_args) -smp 1 -icount shift=0,sleep=off \
        -singlestep -d exec,nochain -D "$work/fifo" -kernel "$IMAGE_DIR/hyp-bench.img" >"$work/console" 2>&1 &
    qemu=$!
    while kill -0 "$qemu" 2>/dev/null; do
        if grep -q "BENCH $figure " "$work/console" 2>/dev/null; then
            kill "$qemu"
            break
        fi
        sleep 0.2
    done
    wait "$qemu" || true
    wait "$reader"
    if ! grep -q "BENCH $figure " "$work/console"; then
        echo "$(script_name): the benchmark boot ended before it printed $figure; its output:" >&2
        cat "$work/console" >&2
        return 1
    fi
}

# Prints size $1 (QEMU -m style: a whole number of MiB, with an optional M or
# G suffix, e.g. 512, 512M, 2G) in MiB; fails with the reason if it is not one.
size_in_mib() {
    local size="${1#size=}"
    size="${size%%,*}"
    case "$size" in
        '' | *[!0-9MmGg]* | *[MmGg]*[0-9MmGg]* | [MmGg]*)
            echo "'$1' is not a memory size: give a whole number of MiB or GiB, e.g. 512M or 2G" >&2
            return 1 ;;
        *[Gg]) echo $(( ${size%[Gg]} * 1024 )) ;;
        *[Mm]) echo $(( ${size%[Mm]} )) ;;
        *) echo $(( size )) ;;
    esac
}

# Where scripts/run-linux has QEMU's loader put the guest's kernel Image, on
# the virt board with RAM_MIB of RAM, for an Image of KERNEL_BYTES and an
# initramfs of INITRD_BYTES; prints the address, or fails saying what does
# not fit and how much RAM would:
#   linux_guest_kernel_address RAM_MIB KERNEL_BYTES INITRD_BYTES
# What is already in RAM then (QEMU's hw/arm/boot.c and the hyp's boot.rs):
# the hyp and the host shim at the bottom (well under 32 MiB), the initramfs
# at RAM + min(RAM / 2, 128 MiB) and QEMU's device tree right after it, and at
# the top the hyp's carve-out (its pool: 8 MiB, page records of 1 MiB per GiB
# and host stage-2 tables of 2 MiB per GiB, twice that with an SMMU, 2 MiB
# aligned; taken here as at most 9 MiB + 5 MiB per GiB). The host shim then
# takes the highest 256 MiB (2 MiB aligned) clear of all of it for the guest.
LINUX_GUEST_RAM_MIB=256
VIRT_RAM_BASE=$((0x40000000))
linux_guest_kernel_address() {
    local ram_mib="$1" kernel_bytes="$2" initrd_bytes="$3"
    local mib=$((1 << 20)) align=$((2 << 20))
    local ram_end=$((VIRT_RAM_BASE + ram_mib * mib))
    local low_end=$((VIRT_RAM_BASE + 32 * mib))
    local half=$((ram_mib / 2)) initrd
    [ "$half" -lt 128 ] || half=128
    initrd=$((VIRT_RAM_BASE + half * mib))
    # The initramfs and the device tree QEMU writes after it (2 MiB is ample).
    local initrd_end=$(((initrd + initrd_bytes + align - 1) / align * align + align))
    local carve_out=$(((9 * mib + 5 * mib * ((ram_mib + 1023) / 1024) + align - 1) / align * align))
    local top=$((ram_end - carve_out))
    local kernel kernel_end
    kernel_end=$(((low_end + kernel_bytes + align - 1) / align * align))
    if [ "$kernel_end" -le "$initrd" ]; then
        kernel=$low_end # below the initramfs: all above it stays free
    else
        kernel=$initrd_end
        kernel_end=$(((kernel + kernel_bytes + align - 1) / align * align))
    fi
    # The guest's RAM: above both, or between the kernel and the initramfs.
    local above=$((kernel_end > initrd_end ? kernel_end : initrd_end))
    local guest=$((LINUX_GUEST_RAM_MIB * mib))
    if [ $((top - above)) -ge "$guest" ] || [ $((initrd - kernel_end)) -ge "$guest" ]; then
        printf '0x%x\n' "$kernel"
        return 0
    fi
    return 1
}

# The least RAM (MiB, a multiple of 2) with which linux_guest_kernel_address
# finds a place, for those sizes of kernel and initramfs.
linux_guest_min_ram_mib() {
    local kernel_bytes="$1" initrd_bytes="$2" ram_mib=$LINUX_GUEST_RAM_MIB
    until linux_guest_kernel_address "$ram_mib" "$kernel_bytes" "$initrd_bytes" >/dev/null; do
        ram_mib=$((ram_mib + 2))
    done
    echo "$ram_mib"
}

# fetch_debian_modules LINUX_DIR OUT_DIR NAME...: copies the modules NAME...
# and every module they depend on (read from each module's own .modinfo) out
# of the Debian kernel package of scripts/fetch-linux (LINUX_DIR: its
# output; the package is downloaded again once) into OUT_DIR, with OUT_DIR/order
# listing them dependencies first. Does nothing if OUT_DIR/order exists and
# OUT_DIR/wanted names the same NAME... (a changed list fetches again).
fetch_debian_modules() {
    local linux="$1" modules="$2" work package tree name
    shift 2
    if [ -f "$modules/order" ] && [ "$(cat "$modules/wanted" 2>/dev/null)" = "$*" ]; then
        return 0
    fi
    rm -rf "$modules"
    work="$(mktemp -d)"
    package="$(cat "$linux/kernel-package")"
    (cd "$work" && apt-get download "$package:arm64" >&2 2>/dev/null)
    dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
    tree="$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)"
    mkdir -p "$modules"
    local order=()
    # The value of FIELD in a module's .modinfo (NUL-separated FIELD=VALUE strings).
    modinfo_field() {
        tr '\0' '\n' <"$1" | sed -n "s/^$2=//p" | head -1
    }
    # Depth first, dependencies before the module that needs them.
    add_module() {
        local name="$1" file dependency seen
        for seen in "${order[@]}"; do
            [ "$seen" != "$name" ] || return 0
        done
        file="$(find "$tree" -name "$name.ko" | head -1)"
        if [ -z "$file" ]; then
            echo "$(script_name): $package has no module $name" >&2
            rm -rf "$work"
            exit 1
        fi
        for dependency in $(modinfo_field "$file" depends | tr ',' ' '); do
            add_module "$dependency"
        done
        cp "$file" "$modules/$name.ko"
        order+=("$name")
    }
    for name in "$@"; do
        add_module "$name"
    done
    printf '%s\n' "${order[@]}" >"$modules/order"
    echo "$*" >"$modules/wanted"
    rm -rf "$work"
}
