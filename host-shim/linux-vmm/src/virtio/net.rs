//! virtio-net (virtio 1.2 section 5.1) over a tap device of the host: one
//! receive and one transmit queue, a fixed locally administered MAC
//! (`VIRTIO_NET_F_MAC`) and no offloads, so every frame is a plain Ethernet
//! frame of at most `MAX_FRAME` bytes behind the 12-byte `virtio_net_hdr_v1`
//! (all zero both ways: no checksum or segmentation work is asked of
//! anyone). The tap is opened without `IFF_VNET_HDR`: the device strips the
//! header from what the guest sends and writes a fresh one before what it
//! receives.
//!
//! Transmit is served in the vCPU thread that notified the queue, each frame
//! one `write` to the tap. Receive is driven by the tap: the bus's backend
//! thread polls it (`backend_fd`) and calls `poll_backend`, which moves
//! frames into the receive buffers the driver offered. With no buffer left
//! the device stops asking to be polled (`backend_wanted`) until the driver
//! notifies the receive queue; the frames meanwhile wait in the tap's own
//! bounded queue (the kernel drops beyond it, as a full NIC would).

use super::{next_chain, serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::ByteValued;

pub const RECEIVE: usize = 0;
pub const TRANSMIT: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// `struct virtio_net_hdr_v1`'s size: what precedes every frame.
pub const HEADER: usize = 12;
/// The largest frame either way: an Ethernet header and 64 KiB. Without
/// offloads Linux sends at most its MTU (1500) plus 14; the bound is what the
/// VMM's one frame buffer holds.
pub const MAX_FRAME: usize = 14 + (64 << 10);
/// The MAC address the guest's interface gets: locally administered
/// (second-lowest bit of the first byte), unicast, "hyp" then 1.
pub const MAC: [u8; 6] = [0x02, b'h', b'y', b'p', 0x00, 0x01];

/// `struct virtio_net_hdr_v1`: the device sends it zeroed but for
/// `num_buffers` (1: no merged buffers).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct NetHeader {
    flags: u8,
    gso_type: u8,
    header_len: u16,
    gso_size: u16,
    checksum_start: u16,
    checksum_offset: u16,
    buffers: u16,
}
// SAFETY: Plain integers, no padding (12 bytes): any bytes are a valid value.
unsafe impl ByteValued for NetHeader {}
const _: () = assert!(core::mem::size_of::<NetHeader>() == HEADER);

/// What the device moved and dropped, for the VMM's report.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct NetCounts {
    pub transmitted: u64,
    pub received: u64,
    /// Frames the guest sent that were longer than `MAX_FRAME` or that the
    /// tap refused.
    pub transmit_dropped: u64,
    /// Frames from the tap larger than the receive buffer offered.
    pub receive_dropped: u64,
}

pub struct Net {
    /// The tap (or, in tests, one end of a datagram socket pair): each read
    /// is one frame, each write sends one. Non-blocking.
    frames: File,
    /// The driver's receive queue had no buffer for a waiting frame: the
    /// tap is not polled until the driver notifies that queue.
    receive_starved: bool,
    /// One frame's room, allocated once.
    frame: Vec<u8>,
    pub counts: NetCounts,
}

impl Net {
    /// A device whose frames come from and go to `frames`, which is made
    /// non-blocking.
    pub fn new(frames: File) -> Result<Net, String> {
        let fd = frames.as_raw_fd();
        // SAFETY: fcntl on an fd this device owns; no memory is passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: As above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(format!("making the tap non-blocking: {}", std::io::Error::last_os_error()));
        }
        Ok(Net { frames, receive_starved: false, frame: vec![0; MAX_FRAME], counts: NetCounts::default() })
    }

    /// One frame the guest sends: its header skipped, the rest to the tap.
    fn transmit(&mut self, chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let mut reader = chain.reader(memory).map_err(DeviceError::from)?;
        let total = reader.available_bytes();
        let Some(length) = total.checked_sub(HEADER) else {
            return Err(DeviceError::Request(format!(
                "a transmit chain of {total} bytes, less than the {HEADER}-byte header"
            )));
        };
        if length > MAX_FRAME {
            self.counts.transmit_dropped += 1;
            return Ok(0);
        }
        let _header: NetHeader = reader.read_obj().map_err(|e| DeviceError::Memory(e.to_string()))?;
        let frame = &mut self.frame[..length];
        reader.read_exact(frame).map_err(|e| DeviceError::Memory(e.to_string()))?;
        // A full or downed tap drops the frame, as a wire would.
        match self.frames.write(frame) {
            Ok(_) => self.counts.transmitted += 1,
            Err(_) => self.counts.transmit_dropped += 1,
        }
        Ok(0)
    }

    /// Moves frames waiting in the tap into the receive buffers the driver
    /// offered, until one or the other runs out. Whether to interrupt.
    fn receive(&mut self, queue: &mut Queue, memory: &DeviceMemory) -> Result<bool, DeviceError> {
        let mut used = false;
        loop {
            let Some(chain) = next_chain(queue, memory)? else {
                // Ask the driver to notify when it adds buffers (EVENT_IDX);
                // some may have come meanwhile.
                if queue.enable_notification(memory)? {
                    continue;
                }
                self.receive_starved = true;
                break;
            };
            let length = match self.frames.read(&mut self.frame) {
                Ok(0) => {
                    queue.go_to_previous_position();
                    return Err(DeviceError::Backend("the tap device was closed".into()));
                }
                Ok(length) => length,
                Err(e) => {
                    // The chain stays the driver's for the next frame.
                    queue.go_to_previous_position();
                    if e.kind() == ErrorKind::WouldBlock {
                        break;
                    }
                    return Err(DeviceError::Backend(format!("reading the tap: {e}")));
                }
            };
            let head = chain.head_index();
            let mut writer = chain.writer(memory).map_err(DeviceError::from)?;
            if writer.available_bytes() < HEADER + length {
                // Too long for the buffer: the frame is dropped, the buffer
                // waits for the next one.
                self.counts.receive_dropped += 1;
                queue.go_to_previous_position();
                continue;
            }
            let header = NetHeader { buffers: 1, ..NetHeader::default() };
            writer.write_obj(header).map_err(|e| DeviceError::Memory(e.to_string()))?;
            writer.write_all(&self.frame[..length]).map_err(|e| DeviceError::Memory(e.to_string()))?;
            queue.add_used(memory, head, (HEADER + length) as u32)?;
            self.counts.received += 1;
            used = true;
        }
        Ok(used && queue.needs_notification(memory)?)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC
    }

    /// `struct virtio_net_config` up to `status` (read only with
    /// VIRTIO_NET_F_STATUS, which is not offered: the link is always up).
    fn config(&self) -> Vec<u8> {
        let mut config = MAC.to_vec();
        config.extend_from_slice(&1u16.to_le_bytes());
        config
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        memory: &DeviceMemory,
    ) -> Result<bool, DeviceError> {
        match (index, queues) {
            (TRANSMIT, [_, transmit]) => serve_queue(transmit, memory, |chain| self.transmit(chain, memory)),
            (RECEIVE, [receive, _]) => {
                self.receive_starved = false;
                self.receive(receive, memory)
            }
            _ => Err(DeviceError::Request(format!("no queue {index}"))),
        }
    }

    fn poll_backend(&mut self, queues: &mut [Queue], memory: &DeviceMemory) -> Result<bool, DeviceError> {
        match queues {
            [receive, _] => self.receive(receive, memory),
            _ => Ok(false),
        }
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.frames.as_raw_fd())
    }

    fn backend_wanted(&self) -> bool {
        !self.receive_starved
    }

    fn reset(&mut self) {
        self.receive_starved = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::{within_seconds, Driver, QUEUE_SIZE as DRIVER_QUEUE_SIZE};
    use std::os::fd::FromRawFd;
    use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_QUEUE_READY, VIRTIO_MMIO_QUEUE_SEL};
    use vm_memory::{Bytes, GuestAddress};

    /// A device on one end of a seqpacket socket pair (a fake tap: a frame a
    /// message, the end of file when the other end closes), and the other
    /// end (the host's network), non-blocking.
    fn net() -> (Driver, File) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills `fds` with two new fds, owned at once.
        let result =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(result, 0);
        // SAFETY: Both fds are new and owned by nobody else.
        let (device_end, network) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        (Driver::start(Box::new(Net::new(device_end).unwrap()), false), network)
    }

    fn send(driver: &mut Driver, frame: &[u8]) {
        driver.guest().write_slice(&[0; HEADER], GuestAddress(driver.buffer(0))).unwrap();
        driver.guest().write_slice(frame, GuestAddress(driver.buffer(1))).unwrap();
        let parts = [(driver.buffer(0), HEADER as u32, false), (driver.buffer(1), frame.len() as u32, false)];
        driver.submit(TRANSMIT, &parts);
    }

    #[test]
    fn the_mac_is_in_the_configuration_space_and_no_offload_is_offered() {
        let (driver, _network) = net();
        let mac: Vec<u64> = (0..6).map(|i| driver.transport.read(0x100 + i, 1)).collect();
        assert_eq!(mac, MAC.iter().map(|&b| u64::from(b)).collect::<Vec<_>>());
        assert_eq!(driver.transport.offered_features() & 0xffff_ffff, 1 << VIRTIO_NET_F_MAC | 1 << 29);
    }

    #[test]
    fn transmitted_frames_reach_the_tap_without_their_header() {
        let (mut driver, network) = net();
        send(&mut driver, b"an ethernet frame");
        let mut got = [0u8; 64];
        let length = (&network).read(&mut got).unwrap();
        assert_eq!(&got[..length], b"an ethernet frame");
        assert_eq!(driver.used(TRANSMIT), (1, 0));
        // A frame across descriptors of any split arrives whole.
        driver.guest().write_slice(&[0; 4], GuestAddress(driver.buffer(0))).unwrap();
        driver.guest().write_slice(b"\0\0\0\0\0\0\0\0split", GuestAddress(driver.buffer(1))).unwrap();
        driver.submit(TRANSMIT, &[(driver.buffer(0), 4, false), (driver.buffer(1), 13, false)]);
        let length = (&network).read(&mut got).unwrap();
        assert_eq!(&got[..length], b"split");
    }

    #[test]
    fn a_transmit_chain_shorter_than_the_header_makes_the_device_need_a_reset() {
        let (mut driver, network) = net();
        driver.submit(TRANSMIT, &[(driver.buffer(0), 11, false)]);
        assert!(!driver.transport.live());
        let reports = driver.transport.take_reports();
        assert!(reports[0].contains("less than the 12-byte header"), "{reports:?}");
        assert!((&network).read(&mut [0u8; 16]).is_err(), "nothing reached the tap");
    }

    #[test]
    fn an_oversized_transmit_frame_is_dropped_and_the_device_goes_on() {
        let (mut driver, network) = net();
        let parts = [(driver.buffer(0), HEADER as u32, false), (driver.buffer(1), MAX_FRAME as u32 + 1, false)];
        driver.submit(TRANSMIT, &parts);
        assert!(driver.transport.live());
        assert_eq!(driver.used(TRANSMIT), (1, 0));
        assert!((&network).read(&mut [0u8; 16]).is_err(), "nothing reached the tap");
        send(&mut driver, b"next");
        assert_eq!((&network).read(&mut [0u8; 16]).unwrap(), 4);
    }

    #[test]
    fn received_frames_fill_the_offered_buffers_and_wait_without_them() {
        let (mut driver, network) = net();
        assert_eq!((&network).write(b"first frame").unwrap(), 11);
        // No receive buffer yet: the frame waits in the tap, and the device
        // stops asking to be polled.
        driver.transport.poll_backend(&driver.memory);
        assert!(!driver.transport.backend_wanted());
        let buffer = driver.buffer(2);
        driver.offer(RECEIVE, &[(buffer, 2048, true)]);
        driver.offer(RECEIVE, &[(driver.buffer(3), 2048, true)]);
        driver.notify(RECEIVE);
        assert!(driver.transport.backend_wanted(), "a notify makes it poll again");
        assert_eq!(driver.used(RECEIVE), (1, (HEADER + 11) as u32));
        // A buffer is left: the tap is polled.
        driver.transport.poll_backend(&driver.memory);
        assert!(driver.transport.backend_wanted());
        assert_eq!(driver.used(RECEIVE).0, 1);
        let mut got = [0u8; HEADER + 11];
        driver.guest().read_slice(&mut got, GuestAddress(buffer)).unwrap();
        assert_eq!(&got[..HEADER], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "num_buffers 1, the rest 0");
        assert_eq!(&got[HEADER..], b"first frame");
        // A frame larger than the buffer offered is dropped; the buffer
        // takes the next one.
        assert_eq!((&network).write(&[7u8; 100]).unwrap(), 100);
        assert_eq!((&network).write(b"fits").unwrap(), 4);
        driver.acknowledge();
        let small = driver.buffer(4);
        driver.submit(RECEIVE, &[(small, HEADER as u32 + 50, true)]);
        driver.transport.poll_backend(&driver.memory);
        // buffer(3) (2048 bytes) took the 100-byte frame, the small one "fits".
        assert_eq!(driver.used(RECEIVE), (3, (HEADER + 4) as u32));
        assert!(!driver.transport.backend_wanted(), "no buffer left");
        assert!(driver.transport.interrupt_level(), "the driver is interrupted for the used buffers");
        let mut got = [0u8; 4];
        driver.guest().read_slice(&mut got, GuestAddress(small + HEADER as u64)).unwrap();
        assert_eq!(&got, b"fits");
        assert_eq!((&network).read(&mut [0u8; 16]).ok(), None);
    }

    /// A receive ring whose available index runs more than the queue's size
    /// ahead, while a frame waits: the device needs a reset (the backend
    /// thread had spun for ever, holding the device's lock).
    #[test]
    fn a_receive_index_beyond_the_queue_s_size_makes_the_device_need_a_reset() {
        let (driver, network) = net();
        let (_, avail, _) = Driver::rings(RECEIVE);
        driver.guest().write_obj(DRIVER_QUEUE_SIZE + 1, GuestAddress(avail + 2)).unwrap();
        (&network).write_all(b"a frame").unwrap();
        let mut driver = within_seconds(10, move || {
            let mut driver = driver;
            driver.transport.poll_backend(&driver.memory);
            driver
        });
        assert!(!driver.transport.live());
        assert!(!driver.transport.take_reports().is_empty());
    }

    /// The driver offers a receive buffer, then makes the queue not ready
    /// (allowed after DRIVER_OK): a frame from the tap is not put there and
    /// the device needs a reset instead of spinning.
    #[test]
    fn a_receive_queue_made_not_ready_is_not_served() {
        let (mut driver, network) = net();
        let buffer = driver.buffer(2);
        driver.offer(RECEIVE, &[(buffer, 2048, true)]);
        driver.transport.write(VIRTIO_MMIO_QUEUE_SEL.into(), 4, RECEIVE as u64, &driver.memory);
        driver.transport.write(VIRTIO_MMIO_QUEUE_READY.into(), 4, 0, &driver.memory);
        (&network).write_all(b"a frame").unwrap();
        let driver = within_seconds(10, move || {
            let mut driver = driver;
            driver.transport.poll_backend(&driver.memory);
            driver
        });
        assert_eq!(driver.used(RECEIVE).0, 0);
        assert!(!driver.transport.live());
    }

    #[test]
    fn a_closed_tap_is_a_backend_error() {
        let (mut driver, network) = net();
        driver.offer(RECEIVE, &[(driver.buffer(2), 2048, true)]);
        drop(network);
        driver.transport.poll_backend(&driver.memory);
        assert!(!driver.transport.live());
        assert!(driver.transport.take_reports()[0].contains("closed"));
    }
}
