//! The VM's virtio devices on `/dev/kvm`: each a `virtio::mmio` transport at
//! its window (`kvm_layout::virtio_window`), its interrupt an SPI driven as a
//! level with `KVM_IRQ_LINE` (high while the transport's interrupt status is
//! not acknowledged). The devices reach the guest's RAM through
//! `DeviceMemory`: all of it for a non-protected VM, only what the guest
//! shared for a protected one (`abort_guard::SharedPages`).

use crate::guest_ram::GuestRam;
use kvm_ioctls::VmFd;
use linux_vmm::command_line::RunOptions;
use linux_vmm::kvm_layout::{self, GUEST_RAM, VIRTIO_FIRST_INTID, VIRTIO_MAX_DEVICES};
use linux_vmm::virtio::block::Block;
use linux_vmm::virtio::console::{Console, Sink};
use linux_vmm::virtio::device_memory::DeviceMemory;
use linux_vmm::virtio::mmio::MmioTransport;
use linux_vmm::virtio::rng::Rng;
use linux_vmm::virtio::VirtioDevice;
use std::collections::VecDeque;
use std::fs::File;
use std::sync::{Arc, Mutex};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm::guest_tree::{VirtioMmioNode, VIRTIO_MMIO_SIZE};

/// One device, its window and its line.
struct Slot {
    node: VirtioMmioNode,
    state: Mutex<SlotState>,
}

struct SlotState {
    transport: MmioTransport,
    /// The level `KVM_IRQ_LINE` last set.
    level: bool,
}

pub struct VirtioBus {
    memory: DeviceMemory,
    slots: Vec<Slot>,
}

/// The guest's RAM as `vm-memory` regions (the mapping stays `GuestRam`'s).
fn guest_memory(ram: &GuestRam) -> Result<GuestMemoryMmap, String> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: The mapping is `ram`'s, read-write, `ram.size()` bytes, and is
    // never unmapped while the process lives (`GuestRam`); an unowned region
    // does not unmap it either.
    let region = unsafe {
        MmapRegion::build_raw(ram.host_address() as *mut u8, ram.size(), libc::PROT_READ | libc::PROT_WRITE, flags)
    }
    .map_err(|e| format!("the guest's RAM for its devices: {e}"))?;
    let region = GuestRegionMmap::new(region, GuestAddress(GUEST_RAM)).ok_or("the guest's RAM overflows")?;
    GuestMemoryMmap::from_regions(vec![region]).map_err(|e| format!("the guest's RAM for its devices: {e}"))
}

/// hvc0's output, a line at a time, as `guest hvc0: ...`.
fn console_printer() -> Sink {
    let mut line = Vec::new();
    Box::new(move |bytes: &[u8]| {
        for &byte in bytes {
            match byte {
                b'\n' => {
                    println!("guest hvc0: {}", String::from_utf8_lossy(&line));
                    line.clear();
                }
                b'\r' => {}
                _ => line.push(byte),
            }
        }
    })
}

impl VirtioBus {
    /// The devices `options` asks for, in this order: the disks, the
    /// console, the entropy source.
    pub fn new(ram: &GuestRam, options: &RunOptions) -> Result<VirtioBus, String> {
        let ram = guest_memory(ram)?;
        let memory = if options.protected {
            DeviceMemory::shared_only(ram, Arc::new(crate::abort_guard::SharedPages))
        } else {
            DeviceMemory::whole(ram)
        };
        let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
        for (index, path) in options.disks.iter().enumerate() {
            let file =
                File::options().read(true).write(true).open(path).map_err(|e| format!("the disk {path}: {e}"))?;
            let id = format!("hyp-vmm-disk{index}");
            devices.push(Box::new(Block::new(file, false, &id).map_err(|e| format!("{path}: {e}"))?));
        }
        let input = Arc::new(Mutex::new(VecDeque::new()));
        devices.push(Box::new(Console::new(console_printer(), input)));
        let urandom = File::open("/dev/urandom").map_err(|e| format!("/dev/urandom for virtio-rng: {e}"))?;
        devices.push(Box::new(Rng::new(Box::new(urandom))));
        if devices.len() > VIRTIO_MAX_DEVICES {
            return Err(format!("{} virtio devices: at most {VIRTIO_MAX_DEVICES}", devices.len()));
        }
        let slots = devices
            .into_iter()
            .enumerate()
            .map(|(index, device)| Slot {
                node: VirtioMmioNode {
                    base: kvm_layout::virtio_window(index),
                    intid: VIRTIO_FIRST_INTID + index as u32,
                },
                state: Mutex::new(SlotState { transport: MmioTransport::new(device, options.protected), level: false }),
            })
            .collect();
        Ok(VirtioBus { memory, slots })
    }

    /// The device tree's nodes of the devices.
    pub fn nodes(&self) -> Vec<VirtioMmioNode> {
        self.slots.iter().map(|slot| slot.node).collect()
    }

    /// What the devices are, for the VMM's first line.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .slots
            .iter()
            .map(|slot| {
                let state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                format!("{} at {:#x} (INTID {})", state.transport.name(), slot.node.base, slot.node.intid)
            })
            .collect();
        names.join(", ")
    }

    fn slot(&self, address: u64) -> Option<(&Slot, u64)> {
        let index = address.checked_sub(kvm_layout::VIRTIO_MMIO_BASE)? / VIRTIO_MMIO_SIZE;
        let slot = self.slots.get(index as usize)?;
        Some((slot, address - slot.node.base))
    }

    /// Whether `address` is in a device's window.
    pub fn claims(&self, address: u64) -> bool {
        self.slot(address).is_some()
    }

    /// An MMIO access in a device's window: a store of `write`, or a load;
    /// what a load reads. The device's line follows its interrupt status.
    pub fn access(&self, vm: &VmFd, address: u64, size: usize, write: Option<u64>) -> Result<u64, String> {
        let Some((slot, offset)) = self.slot(address) else { return Ok(0) };
        let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
        let value = match write {
            Some(value) => {
                state.transport.write(offset, size, value, &self.memory);
                0
            }
            None => state.transport.read(offset, size),
        };
        for report in state.transport.take_reports() {
            println!("hyp-vmm: {} at {:#x}: {report}", state.transport.name(), slot.node.base);
        }
        let level = state.transport.interrupt_level();
        if level != state.level {
            vm.set_irq_line(kvm_layout::spi_line(slot.node.intid), level)
                .map_err(|e| format!("KVM_IRQ_LINE of INTID {} to {}: {e}", slot.node.intid, level as u8))?;
            state.level = level;
        }
        Ok(value)
    }
}
