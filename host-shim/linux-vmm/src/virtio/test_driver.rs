//! A guest's virtio driver, for the tests: it negotiates every offered
//! feature through the MMIO registers, lays its queues out in a fake guest
//! RAM, and submits descriptor chains as Linux's `virtio_ring` does.

use super::device_memory::tests::ram;
use super::device_memory::DeviceMemory;
use super::mmio::MmioTransport;
use super::VirtioDevice;
use virtio_bindings::virtio_mmio::*;
use vm_memory::{Bytes, GuestAddress};

pub const RAM_BASE: u64 = 0x8000_0000;
const RAM_SIZE: usize = 0x10_0000;
pub const QUEUE_SIZE: u16 = 16;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

pub struct Driver {
    pub transport: MmioTransport,
    pub memory: DeviceMemory,
    avail_idx: Vec<u16>,
}

impl Driver {
    pub fn start(device: Box<dyn VirtioDevice>, protected: bool) -> Driver {
        Driver::start_with(device, protected, DeviceMemory::whole(ram(RAM_BASE, RAM_SIZE)))
    }

    /// The driver's side of virtio 1.2 section 3.1.1, accepting everything offered.
    pub fn start_with(device: Box<dyn VirtioDevice>, protected: bool, memory: DeviceMemory) -> Driver {
        let queues = device.queue_sizes().len();
        let mut transport = MmioTransport::new(device, protected);
        let write = |t: &mut MmioTransport, register: u32, value: u64| t.write(register.into(), 4, value, &memory);
        assert_eq!(transport.read(VIRTIO_MMIO_MAGIC_VALUE.into(), 4), 0x7472_6976);
        write(&mut transport, VIRTIO_MMIO_STATUS, 1 | 2);
        let offered = transport.offered_features();
        for select in 0..2u64 {
            write(&mut transport, VIRTIO_MMIO_DRIVER_FEATURES_SEL, select);
            write(&mut transport, VIRTIO_MMIO_DRIVER_FEATURES, offered >> (32 * select) & 0xffff_ffff);
        }
        write(&mut transport, VIRTIO_MMIO_STATUS, 1 | 2 | 8);
        assert_ne!(transport.status() & 8, 0, "FEATURES_OK taken");
        for queue in 0..queues {
            let (desc, avail, used) = Driver::rings(queue);
            write(&mut transport, VIRTIO_MMIO_QUEUE_SEL, queue as u64);
            write(&mut transport, VIRTIO_MMIO_QUEUE_NUM, QUEUE_SIZE.into());
            write(&mut transport, VIRTIO_MMIO_QUEUE_DESC_LOW, desc & 0xffff_ffff);
            write(&mut transport, VIRTIO_MMIO_QUEUE_DESC_HIGH, desc >> 32);
            write(&mut transport, VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail & 0xffff_ffff);
            write(&mut transport, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, avail >> 32);
            write(&mut transport, VIRTIO_MMIO_QUEUE_USED_LOW, used & 0xffff_ffff);
            write(&mut transport, VIRTIO_MMIO_QUEUE_USED_HIGH, used >> 32);
            write(&mut transport, VIRTIO_MMIO_QUEUE_READY, 1);
        }
        write(&mut transport, VIRTIO_MMIO_STATUS, 1 | 2 | 8 | 4);
        Driver { transport, memory, avail_idx: vec![0; queues] }
    }

    /// The guest's RAM as its driver sees it (unchecked).
    pub fn guest(&self) -> &vm_memory::GuestMemoryMmap {
        self.memory.guest_view()
    }

    /// Queue `queue`'s descriptor table, driver (avail) and device (used) rings.
    pub fn rings(queue: usize) -> (u64, u64, u64) {
        let base = RAM_BASE + queue as u64 * 0x800;
        (base, base + 0x200, base + 0x400)
    }

    /// Data buffer `index` (a page each, shared in the protected tests).
    pub fn buffer(&self, index: u64) -> u64 {
        RAM_BASE + 0x2000 + index * 0x1000
    }

    /// A buffer in a page no test shares.
    pub fn unshared_buffer(&self) -> u64 {
        RAM_BASE + 0x8_0000
    }

    /// Makes `parts` (address, length, device-writable) one chain on `queue`,
    /// asks for an interrupt when it is used, and notifies.
    pub fn submit(&mut self, queue: usize, parts: &[(u64, u32, bool)]) {
        self.offer(queue, parts);
        self.notify(queue);
    }

    /// Makes the chain available without notifying.
    pub fn offer(&mut self, queue: usize, parts: &[(u64, u32, bool)]) {
        let (desc, avail, _) = Driver::rings(queue);
        let first = (self.avail_idx[queue] % (QUEUE_SIZE / 4)) * 4;
        for (i, &(addr, len, writable)) in parts.iter().enumerate() {
            let index = first + i as u16;
            let mut flags = if writable { DESC_F_WRITE } else { 0 };
            if i + 1 < parts.len() {
                flags |= DESC_F_NEXT;
            }
            let entry = desc + 16 * u64::from(index);
            self.guest().write_obj(addr, GuestAddress(entry)).unwrap();
            self.guest().write_obj(len, GuestAddress(entry + 8)).unwrap();
            self.guest().write_obj(flags, GuestAddress(entry + 12)).unwrap();
            self.guest().write_obj(index + 1, GuestAddress(entry + 14)).unwrap();
        }
        let idx = self.avail_idx[queue];
        let slot = avail + 4 + 2 * u64::from(idx % QUEUE_SIZE);
        self.guest().write_obj(first, GuestAddress(slot)).unwrap();
        self.avail_idx[queue] = idx.wrapping_add(1);
        self.guest().write_obj(self.avail_idx[queue], GuestAddress(avail + 2)).unwrap();
        // used_event: interrupt once this chain is used.
        self.guest().write_obj(idx, GuestAddress(avail + 4 + 2 * u64::from(QUEUE_SIZE))).unwrap();
    }

    pub fn notify(&mut self, queue: usize) {
        self.transport.write(VIRTIO_MMIO_QUEUE_NOTIFY.into(), 4, queue as u64, &self.memory);
    }

    /// How many chains the device used on `queue`, and the last one's length.
    pub fn used(&self, queue: usize) -> (u16, u32) {
        let (_, _, used) = Driver::rings(queue);
        let idx: u16 = self.guest().read_obj(GuestAddress(used + 2)).unwrap();
        let last = u64::from(idx.wrapping_sub(1) % QUEUE_SIZE);
        let len: u32 = self.guest().read_obj(GuestAddress(used + 4 + 8 * last + 4)).unwrap();
        (idx, len)
    }

    /// Acknowledges every pending interrupt.
    pub fn acknowledge(&mut self) {
        let status = self.transport.read(VIRTIO_MMIO_INTERRUPT_STATUS.into(), 4);
        self.transport.write(VIRTIO_MMIO_INTERRUPT_ACK.into(), 4, status, &self.memory);
    }
}

/// Runs `step` in a thread of its own and gives back what it returns, or
/// fails the test if it has not returned within `seconds` (a device that
/// spins for ever).
pub fn within_seconds<T: Send + 'static>(seconds: u64, step: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(step());
    });
    match result.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(value) => value,
        Err(_) => panic!("the device did not return within {seconds} s"),
    }
}
