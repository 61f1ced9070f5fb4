# Shared helpers of the scripts in this folder; source it, do not run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET=aarch64-unknown-none
IMAGE_DIR="$REPO_ROOT/target/image"

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

# Installs qemu-system-aarch64 from Debian when missing (as root), or says how.
ensure_qemu() {
    if command -v qemu-system-aarch64 >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        echo "qemu-system-aarch64 not found: installing Debian's qemu-system-arm" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null
    else
        echo "qemu-system-aarch64 not found; install it with: sudo apt-get install -y qemu-system-arm" >&2
        return 1
    fi
}

# Debian's U-Boot for QEMU's arm64 virt board (package u-boot-qemu), for the
# boot test that loads hyp.img with booti.
UBOOT_QEMU_ARM64=/usr/lib/u-boot/qemu_arm64/u-boot.bin
ensure_uboot() {
    if [ -f "$UBOOT_QEMU_ARM64" ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ]; then
        echo "$UBOOT_QEMU_ARM64 not found: installing Debian's u-boot-qemu" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq u-boot-qemu >/dev/null
    else
        echo "U-Boot for QEMU not found; install it with: sudo apt-get install -y u-boot-qemu" >&2
        return 1
    fi
}

# The QEMU command line of a default run (scripts/run, the boot tests), without -kernel.
qemu_default_args() {
    echo -M virt,virtualization=on,gic-version=3 -cpu max -m 1G -nographic -nic none \
        -semihosting -append hyp.exit=semihosting
}
