//! The host's tap device behind virtio-net (`hyp-vmm run --tap NAME`):
//! `/dev/net/tun` bound to the interface NAME with `TUNSETIFF`, as a tap
//! (Ethernet frames) without the packet-information prefix and without
//! `IFF_VNET_HDR` (the device adds and strips virtio-net's header itself).
//! Linux makes the interface if it does not exist (that needs
//! CAP_NET_ADMIN) and removes it when the last fd closes, unless it was
//! made persistent beforehand; the host brings it up and addresses it.

use std::fs::File;
use std::os::fd::AsRawFd;

/// `_IOW('T', 202, int)`.
const TUNSETIFF: u32 = 0x4004_54ca;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct InterfaceRequest {
    name: [u8; 16],
    flags: i16,
    _rest: [u8; 22],
}

/// Opens the tap `name` (at most 15 bytes: `command_line` checked it).
pub fn open(name: &str) -> Result<File, String> {
    let tun = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun for the tap {name}: {e} (is the tun module loaded?)"))?;
    let mut request =
        InterfaceRequest { name: [0; 16], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as i16, _rest: [0; 22] };
    for (slot, byte) in request.name.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `request`
    // is laid out as (40 bytes), on the tun fd this function owns.
    let result = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &raw mut request) };
    if result < 0 {
        return Err(format!("TUNSETIFF of the tap {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(tun)
}
