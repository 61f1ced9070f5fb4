//! `hyp-vmm`'s virtio devices over virtio-mmio (virtio 1.2, "Virtio Over
//! MMIO", version 2): the transport (`mmio`), the guest memory a device may
//! touch (`device_memory`: for a protected VM only what the guest shared),
//! and the devices. Queues are `virtio-queue`'s, guest memory `vm-memory`'s.
//! Portable: the tests run on the development machine with a fake guest.

pub mod block;
pub mod console;
pub mod device_memory;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
mod test_driver;
pub mod vsock;

use device_memory::DeviceMemory;
use std::fmt;
use std::os::fd::RawFd;
use virtio_queue::Queue;

/// Feature bits every device here offers (virtio 1.2 section 6).
pub const F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
/// The device reaches memory through the platform's rules: for a protected
/// VM, only what the guest shared (the guest then bounces its buffers).
pub const F_ACCESS_PLATFORM: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_ACCESS_PLATFORM;
pub const F_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// Why a device stopped serving a queue: the device then needs a reset
/// (`DEVICE_NEEDS_RESET`); the VMM reports it and the VM goes on.
#[derive(Debug)]
pub enum DeviceError {
    /// The guest pointed the device at memory it may not use: outside its
    /// RAM, or (protected VM) a page it did not share.
    Memory(String),
    /// A request the device cannot parse (a chain too short, a bad header).
    Request(String),
    /// The host side (a file, a tap device) failed.
    Backend(String),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Memory(what) => write!(f, "the guest pointed the device at memory it may not use: {what}"),
            DeviceError::Request(what) => write!(f, "a malformed request: {what}"),
            DeviceError::Backend(what) => write!(f, "the host side failed: {what}"),
        }
    }
}

impl From<virtio_queue::Error> for DeviceError {
    fn from(error: virtio_queue::Error) -> DeviceError {
        DeviceError::Memory(error.to_string())
    }
}

/// One virtio device behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (virtio 1.2 section 5).
    fn device_type(&self) -> u32;
    /// A short name for messages ("virtio-blk").
    fn name(&self) -> &'static str;
    /// The sizes of its queues, the most entries each (a power of 2).
    fn queue_sizes(&self) -> &'static [u16];
    /// The device-specific feature bits it offers (the transport adds
    /// VERSION_1, EVENT_IDX and, for a protected VM, ACCESS_PLATFORM).
    fn features(&self) -> u64;
    /// The device-specific configuration space.
    fn config(&self) -> Vec<u8>;
    /// The driver wrote `data` at `offset` of the configuration space; most
    /// devices ignore it.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with `features` accepted: the queues are live.
    fn activate(&mut self, _features: u64) {}
    /// The driver notified queue `index`: serve what is available. Whether
    /// the guest must be interrupted.
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], memory: &DeviceMemory)
        -> Result<bool, DeviceError>;
    /// Something arrived from the host side (console input, a network frame):
    /// serve the queues that wait for it. Whether to interrupt.
    fn poll_backend(&mut self, _queues: &mut [Queue], _memory: &DeviceMemory) -> Result<bool, DeviceError> {
        Ok(false)
    }
    /// The host-side file whose readiness means `poll_backend` has work (a
    /// tap device, an epoll set of sockets): the bus's backend thread polls
    /// it (`VirtioBus::serve_backends`). None: the device has no backend to
    /// wait for.
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// Whether `poll_backend` can make progress when `backend_fd` is ready:
    /// false while the guest offers no buffer to receive into. The bus then
    /// stops polling the fd until the guest accesses the device (a notify
    /// makes it true again), so a ready fd cannot keep a thread spinning.
    fn backend_wanted(&self) -> bool {
        true
    }
    /// The driver reset the device (status 0): drop what it was doing.
    fn reset(&mut self) {}
}

/// One request taken from a queue: its descriptor chain.
pub type Chain<'a> = virtio_queue::DescriptorChain<&'a DeviceMemory>;

/// The next chain the driver made available on `queue`, or None if there is
/// none. `virtio-queue`'s `pop_descriptor_chain` answers None too for a ring
/// it cannot use (an available index more than the queue's size ahead, an
/// entry the device may not read, a queue not ready), while
/// `enable_notification` still sees work: a loop that re-checks there
/// would spin for ever in a vCPU or the backend thread. Here those are errors.
pub fn next_chain<'a>(queue: &mut Queue, memory: &'a DeviceMemory) -> Result<Option<Chain<'a>>, DeviceError> {
    use virtio_queue::{QueueOwnedT, QueueT};
    if !queue.ready() {
        return Err(DeviceError::Request("a queue the driver has not made ready".into()));
    }
    let available = queue.avail_idx(memory, std::sync::atomic::Ordering::Acquire)?;
    if available.0 == queue.next_avail() {
        return Ok(None);
    }
    match queue.iter(memory)?.next() {
        Some(chain) => Ok(Some(chain)),
        None => Err(DeviceError::Memory(format!(
            "the driver's available ring (index {}) has no entry the device may read",
            queue.next_avail()
        ))),
    }
}

/// Serves what the driver made available on `queue`: `serve` handles each
/// chain and says how many bytes it wrote into it; each goes to the used
/// ring. With EVENT_IDX the driver is asked to notify again only once the
/// ring is empty (the standard loop of virtio 1.2 section 2.7.10). Whether
/// the guest must be interrupted.
pub fn serve_queue(
    queue: &mut Queue,
    memory: &DeviceMemory,
    mut serve: impl FnMut(Chain<'_>) -> Result<u32, DeviceError>,
) -> Result<bool, DeviceError> {
    use virtio_queue::QueueT;
    let mut served = false;
    loop {
        queue.disable_notification(memory)?;
        while let Some(chain) = next_chain(queue, memory)? {
            let head = chain.head_index();
            let written = serve(chain)?;
            queue.add_used(memory, head, written)?;
            served = true;
        }
        if !queue.enable_notification(memory)? {
            break;
        }
    }
    Ok(served && queue.needs_notification(memory)?)
}
