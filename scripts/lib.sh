# Shared helpers of the scripts in this folder; source it, do not run it.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The host shim's target; the hyp's is HYP_TARGET (no FP/SIMD registers).
TARGET=aarch64-unknown-none
HYP_TARGET=aarch64-unknown-none-softfloat
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
