//! The virtio-mmio transport (virtio 1.2 section 4.2, version 2, the
//! "modern" layout Linux's `virtio_mmio` speaks): the register file in front
//! of one device. The guest's driver negotiates features, lays out its queues
//! and notifies them here; the transport hands the device its queues and the
//! guest memory it may touch, and keeps the interrupt status whose line the
//! VMM drives as a level (`interrupt_level`).
//!
//! A hostile guest gets no further than the device allows: features it was
//! not offered are refused at FEATURES_OK (and a protected VM must accept
//! ACCESS_PLATFORM: without it the driver would hand the device unshared
//! pages), rings outside what the device may touch are refused at DRIVER_OK,
//! and a device error makes the device need a reset (`DEVICE_NEEDS_RESET`,
//! a configuration-change interrupt) instead of ending the VMM.

use super::device_memory::DeviceMemory;
use super::{VirtioDevice, F_ACCESS_PLATFORM, F_EVENT_IDX, F_VERSION_1};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio::*;
use virtio_queue::{Queue, QueueT};

/// "virt" in little-endian ASCII.
const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
/// The vendor ID this VMM's devices report: "HYPV".
pub const VENDOR_ID: u32 = 0x5650_5948;
/// The size of a device's register window.
pub const WINDOW_SIZE: u64 = 0x200;
/// The bytes of configuration space a device may have.
const CONFIG_SIZE: u64 = WINDOW_SIZE - VIRTIO_MMIO_CONFIG as u64;

/// One device behind its registers.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    protected: bool,
    queues: Vec<Queue>,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    queue_select: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    /// What went wrong since the VMM last asked (`take_reports`).
    reports: Vec<String>,
}

impl MmioTransport {
    /// `device` for a VM of the given type: a protected VM's devices offer
    /// ACCESS_PLATFORM and require it.
    pub fn new(device: Box<dyn VirtioDevice>, protected: bool) -> MmioTransport {
        let queues = device.queue_sizes().iter().filter_map(|&size| Queue::new(size).ok()).collect();
        MmioTransport {
            device,
            protected,
            queues,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            queue_select: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            reports: Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.device.name()
    }

    /// Every feature the device offers.
    pub fn offered_features(&self) -> u64 {
        let platform = if self.protected { F_ACCESS_PLATFORM } else { 0 };
        self.device.features() | F_VERSION_1 | F_EVENT_IDX | platform
    }

    /// Whether the device's interrupt line is high: some interrupt status
    /// bit the driver has not acknowledged.
    pub fn interrupt_level(&self) -> bool {
        self.interrupt_status != 0
    }

    /// Whether the driver set DRIVER_OK and the device works.
    pub fn live(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && self.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0
    }

    /// The driver's status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// What went wrong since the last call, one message each.
    pub fn take_reports(&mut self) -> Vec<String> {
        core::mem::take(&mut self.reports)
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// A load of `size` bytes at `offset` in the window.
    pub fn read(&self, offset: u64, size: usize) -> u64 {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            return self.read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), size);
        }
        // Registers are 32 bits wide and aligned (4.2.2.2).
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let queue = self.queues.get(self.queue_select as usize);
        let value = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_select {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size().into()),
            VIRTIO_MMIO_QUEUE_READY => queue.is_some_and(|q| q.ready()).into(),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt_status,
            VIRTIO_MMIO_STATUS => self.status,
            // No shared memory regions: their length reads as all ones.
            VIRTIO_MMIO_SHM_LEN_LOW | VIRTIO_MMIO_SHM_LEN_HIGH => u32::MAX,
            VIRTIO_MMIO_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        };
        value.into()
    }

    fn read_config(&self, offset: u64, size: usize) -> u64 {
        let config = self.device.config();
        let start = offset as usize;
        match config.get(start..start.saturating_add(size)) {
            Some(bytes) if size <= 8 => bytes.iter().rev().fold(0, |value, &byte| value << 8 | u64::from(byte)),
            _ => 0,
        }
    }

    /// A store of `size` bytes of `value` at `offset`; `memory` is the guest
    /// memory the device may touch (a notify makes it serve a queue).
    pub fn write(&mut self, offset: u64, size: usize, value: u64, memory: &DeviceMemory) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            let offset = offset - u64::from(VIRTIO_MMIO_CONFIG);
            if offset + size as u64 <= CONFIG_SIZE && size <= 8 {
                let bytes = value.to_le_bytes();
                self.device.write_config(offset, &bytes[..size]);
            }
            return;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return;
        }
        let value = value as u32;
        // A queue's layout may change only while it is not ready and the
        // driver has not yet set DRIVER_OK (4.2.3.2).
        let configurable = self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_select = value,
            VIRTIO_MMIO_DRIVER_FEATURES if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 => {
                match self.driver_features_select {
                    0 => self.driver_features = self.driver_features & !0xffff_ffff | u64::from(value),
                    1 => self.driver_features = self.driver_features & 0xffff_ffff | u64::from(value) << 32,
                    _ => {}
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.queue_select = value,
            VIRTIO_MMIO_QUEUE_READY if configurable || value == 0 => {
                if let Some(queue) = self.selected_queue() {
                    queue.set_ready(value == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_NOTIFY => self.notify(value, memory),
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt_status &= !value,
            VIRTIO_MMIO_STATUS => self.set_status(value, memory),
            register if configurable => {
                let Some(queue) = self.selected_queue().filter(|q| !q.ready()) else { return };
                match register {
                    // A size beyond 16 bits is no size: ignored, not truncated.
                    VIRTIO_MMIO_QUEUE_NUM => {
                        if let Ok(size) = u16::try_from(value) {
                            queue.set_size(size);
                        }
                    }
                    VIRTIO_MMIO_QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_AVAIL_LOW => queue.set_avail_ring_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_AVAIL_HIGH => queue.set_avail_ring_address(None, Some(value)),
                    VIRTIO_MMIO_QUEUE_USED_LOW => queue.set_used_ring_address(Some(value), None),
                    VIRTIO_MMIO_QUEUE_USED_HIGH => queue.set_used_ring_address(None, Some(value)),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The driver writes the status register: 0 resets the device; otherwise
    /// it may only add bits, and FEATURES_OK and DRIVER_OK are checked.
    fn set_status(&mut self, value: u32, memory: &DeviceMemory) {
        if value == 0 {
            self.reset();
            return;
        }
        // Bits the driver may not clear, or the device's own.
        let value = value & !VIRTIO_CONFIG_S_NEEDS_RESET | self.status;
        let adding = value & !self.status;
        if adding & VIRTIO_CONFIG_S_FEATURES_OK != 0 && !self.features_acceptable() {
            // Left unset: the driver reads it back and gives up (3.1.1).
            self.status = value & !VIRTIO_CONFIG_S_FEATURES_OK;
            return;
        }
        if adding & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
                return;
            }
            self.status = value;
            self.activate(memory);
            return;
        }
        self.status = value;
    }

    /// The driver accepted only what was offered, VERSION_1, and for a
    /// protected VM ACCESS_PLATFORM.
    fn features_acceptable(&mut self) -> bool {
        let offered = self.offered_features();
        let accepted = self.driver_features;
        let mut needed = F_VERSION_1;
        if self.protected {
            needed |= F_ACCESS_PLATFORM;
        }
        let problem = if accepted & !offered != 0 {
            Some(format!("features {:#x} that were not offered", accepted & !offered))
        } else if accepted & needed != needed {
            Some(format!("features {accepted:#x} without {:#x}, which this device requires", needed & !accepted))
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.reports.push(format!("the driver accepted {problem}: FEATURES_OK refused"));
                false
            }
            None => true,
        }
    }

    /// DRIVER_OK: every ready queue must lie where the device may touch it.
    fn activate(&mut self, memory: &DeviceMemory) {
        let event_idx = self.driver_features & F_EVENT_IDX != 0;
        for (index, queue) in self.queues.iter_mut().enumerate() {
            if !queue.ready() {
                continue;
            }
            queue.set_event_idx(event_idx);
            if !queue.is_valid(memory) {
                let message = format!(
                    "queue {index}'s rings (descriptors {:#x}, driver {:#x}, device {:#x}, {} entries) are not in \
                     memory the device may use",
                    queue.desc_table(),
                    queue.avail_ring(),
                    queue.used_ring(),
                    queue.size()
                );
                self.fail(message);
                return;
            }
        }
        self.device.activate(self.driver_features);
    }

    /// The device needs a reset: the driver learns it from the status and a
    /// configuration-change interrupt (2.1.2); the VMM reports why.
    fn fail(&mut self, why: String) {
        self.reports.push(format!("{why}: the device needs a reset"));
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
    }

    fn notify(&mut self, index: u32, memory: &DeviceMemory) {
        let index = index as usize;
        if !self.live() || !self.queues.get(index).is_some_and(|q| q.ready()) {
            return;
        }
        match self.device.process_queue(index, &mut self.queues, memory) {
            Ok(true) => self.interrupt_status |= VIRTIO_MMIO_INT_VRING,
            Ok(false) => {}
            Err(error) => self.fail(format!("queue {index}: {error}")),
        }
    }

    /// The fd the device's backend signals readiness on (`VirtioDevice::backend_fd`).
    pub fn backend_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.backend_fd()
    }

    /// Whether the backend's fd should be polled now: only while the driver
    /// runs the device and the device can take what arrives.
    pub fn backend_wanted(&self) -> bool {
        self.live() && self.device.backend_wanted()
    }

    /// The host side has something for the guest: let the device serve its
    /// queues (only while the driver runs it).
    pub fn poll_backend(&mut self, memory: &DeviceMemory) {
        if !self.live() {
            return;
        }
        match self.device.poll_backend(&mut self.queues, memory) {
            Ok(true) => self.interrupt_status |= VIRTIO_MMIO_INT_VRING,
            Ok(false) => {}
            Err(error) => self.fail(error.to_string()),
        }
    }

    /// Queue `index`'s size, for the tests.
    #[cfg(test)]
    fn queue_size(&self, index: usize) -> Option<u16> {
        self.queues.get(index).map(|queue| queue.size())
    }

    fn reset(&mut self) {
        self.device.reset();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.config_generation = self.config_generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::device_memory::tests::{ram, FakeShares};
    use crate::virtio::rng::Rng;
    use crate::virtio::test_driver::{within_seconds, Driver, QUEUE_SIZE, RAM_BASE};
    use std::sync::Arc;
    use vm_memory::Bytes;

    fn rng() -> Box<dyn VirtioDevice> {
        Box::new(Rng::new(Box::new(std::io::repeat(7))))
    }

    fn reg(register: u32) -> u64 {
        register.into()
    }

    #[test]
    fn the_registers_identify_a_version_2_device() {
        let transport = MmioTransport::new(rng(), false);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_MAGIC_VALUE), 4), 0x7472_6976);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_VERSION), 4), 2);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_DEVICE_ID), 4), 4);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_QUEUE_NUM_MAX), 4), 64);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_MAGIC_VALUE), 2), 0, "registers are 32-bit");
        assert_eq!(transport.read(reg(VIRTIO_MMIO_SHM_LEN_LOW), 4), 0xffff_ffff, "no shared memory");
    }

    #[test]
    fn a_protected_vm_s_device_offers_and_requires_access_platform() {
        let memory = DeviceMemory::whole(ram(RAM_BASE, 0x10_0000));
        let non_protected = MmioTransport::new(rng(), false);
        assert_eq!(non_protected.offered_features() & F_ACCESS_PLATFORM, 0);
        let mut transport = MmioTransport::new(rng(), true);
        assert_ne!(transport.offered_features() & F_ACCESS_PLATFORM, 0);
        // A driver that leaves ACCESS_PLATFORM out is refused FEATURES_OK.
        transport.write(reg(VIRTIO_MMIO_STATUS), 4, 3, &memory);
        transport.write(reg(VIRTIO_MMIO_DRIVER_FEATURES_SEL), 4, 1, &memory);
        transport.write(reg(VIRTIO_MMIO_DRIVER_FEATURES), 4, 1, &memory);
        transport.write(reg(VIRTIO_MMIO_STATUS), 4, 3 | 8, &memory);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_STATUS), 4), 3);
        assert!(transport.take_reports()[0].contains("requires"));
        // Nor may a driver take what was not offered.
        transport.write(reg(VIRTIO_MMIO_DRIVER_FEATURES), 4, 1 | 2 | 1 << 8, &memory);
        transport.write(reg(VIRTIO_MMIO_STATUS), 4, 3 | 8, &memory);
        assert_eq!(transport.read(reg(VIRTIO_MMIO_STATUS), 4), 3);
        assert!(transport.take_reports()[0].contains("not offered"));
        // DRIVER_OK without FEATURES_OK changes nothing.
        transport.write(reg(VIRTIO_MMIO_STATUS), 4, 3 | 4, &memory);
        assert!(!transport.live());
    }

    /// A protected guest's driver puts its rings in memory it did not share:
    /// DRIVER_OK leaves the device needing a reset, and it serves nothing.
    #[test]
    fn rings_in_unshared_memory_are_refused_at_driver_ok() {
        let guest = ram(RAM_BASE, 0x10_0000);
        let shares = Arc::new(FakeShares::default());
        shares.share(&guest, RAM_BASE + 0x2000, RAM_BASE + 0x4000);
        let memory = DeviceMemory::shared_only(guest, shares);
        let mut driver = Driver::start_with(rng(), true, memory);
        assert!(!driver.transport.live());
        assert_ne!(driver.transport.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
        assert_eq!(driver.transport.read(reg(VIRTIO_MMIO_INTERRUPT_STATUS), 4), u64::from(VIRTIO_MMIO_INT_CONFIG));
        let reports = driver.transport.take_reports();
        assert!(reports[0].contains("queue 0's rings"), "{reports:?}");
        let buffer = driver.buffer(0);
        driver.submit(0, &[(buffer, 8, true)]);
        assert_eq!(driver.memory.first_refused(vm_memory::GuestAddress(buffer), 8), None);
        // A reset makes it usable again from the start.
        driver.transport.write(reg(VIRTIO_MMIO_STATUS), 4, 0, &driver.memory);
        assert_eq!(driver.transport.status(), 0);
        assert!(!driver.transport.interrupt_level());
    }

    /// A driver whose available index runs more than the queue's size
    /// ahead: the device needs a reset (it had spun for ever in the vCPU's
    /// thread, holding the device's lock).
    #[test]
    fn an_available_index_beyond_the_queue_s_size_makes_the_device_need_a_reset() {
        let driver = Driver::start(rng(), false);
        let (_, avail, _) = Driver::rings(0);
        driver.guest().write_obj(QUEUE_SIZE + 1, vm_memory::GuestAddress(avail + 2)).unwrap();
        let mut driver = within_seconds(10, move || {
            let mut driver = driver;
            driver.notify(0);
            driver
        });
        assert!(!driver.transport.live());
        let reports = driver.transport.take_reports();
        assert!(reports[0].contains("queue 0"), "{reports:?}");
    }

    /// A queue size beyond 16 bits is ignored, not cut to its low 16 bits.
    #[test]
    fn a_queue_size_beyond_16_bits_is_ignored() {
        let memory = DeviceMemory::whole(ram(RAM_BASE, 0x10_0000));
        let mut transport = MmioTransport::new(rng(), false);
        transport.write(reg(VIRTIO_MMIO_QUEUE_NUM), 4, 0x1_0010, &memory);
        assert_eq!(transport.queue_size(0), Some(64), "still the reset size");
        transport.write(reg(VIRTIO_MMIO_QUEUE_NUM), 4, 16, &memory);
        assert_eq!(transport.queue_size(0), Some(16));
    }

    #[test]
    fn a_ready_queue_cannot_be_moved_and_notifies_before_driver_ok_do_nothing() {
        let mut driver = Driver::start(rng(), false);
        let (desc, _, _) = Driver::rings(0);
        driver.transport.write(reg(VIRTIO_MMIO_QUEUE_DESC_LOW), 4, 0x1000, &driver.memory);
        let state_desc = desc;
        let buffer = driver.buffer(0);
        driver.submit(0, &[(buffer, 8, true)]);
        assert_eq!(driver.used(0), (1, 8), "the queue still works at {state_desc:#x}");
        // Out-of-range queue numbers are ignored.
        driver.notify(5);
        driver.transport.write(reg(VIRTIO_MMIO_QUEUE_SEL), 4, 9, &driver.memory);
        assert_eq!(driver.transport.read(reg(VIRTIO_MMIO_QUEUE_NUM_MAX), 4), 0);
        assert!(driver.transport.live());
    }
}
