//! The VM's virtio devices on `/dev/kvm`: each a `virtio::mmio` transport at
//! its window (`kvm_layout::virtio_window`), its interrupt an SPI driven as a
//! level with `KVM_IRQ_LINE` (high while the transport's interrupt status is
//! not acknowledged). The devices reach the guest's RAM through
//! `DeviceMemory`: all of it for a non-protected VM, only what the guest
//! shared for a protected one (`abort_guard::SharedPages`).
//!
//! A device with a host side that brings work by itself (virtio-net's tap,
//! virtio-vsock's sockets) has a backend fd: one thread of the VMM,
//! `serve_backends`, polls those fds and a wake-up eventfd, and lets a ready
//! device serve its queues. It polls a device's fd only while the device can
//! take what arrives (`MmioTransport::backend_wanted`: the driver runs it
//! and offered buffers); a vCPU's access that makes it want again wakes the
//! thread. So a ready fd never keeps the thread spinning.

use crate::guest_ram::GuestRam;
use kvm_ioctls::VmFd;
use linux_vmm::command_line::RunOptions;
use linux_vmm::kvm_layout::{self, GUEST_RAM, VIRTIO_FIRST_INTID, VIRTIO_MAX_DEVICES};
use linux_vmm::virtio::block::Block;
use linux_vmm::virtio::console::{self, Console, Input, Sink};
use linux_vmm::virtio::device_memory::DeviceMemory;
use linux_vmm::virtio::mmio::MmioTransport;
use linux_vmm::virtio::net::Net;
use linux_vmm::virtio::rng::Rng;
use linux_vmm::virtio::vsock::Vsock;
use linux_vmm::virtio::VirtioDevice;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm::guest_tree::{VirtioMmioNode, VIRTIO_MMIO_SIZE};

/// One device, its window and its line.
struct Slot {
    node: VirtioMmioNode,
    /// The device's backend fd (`VirtioDevice::backend_fd`), if it has one:
    /// open as long as the device.
    backend: Option<RawFd>,
    state: Mutex<SlotState>,
}

struct SlotState {
    transport: MmioTransport,
    /// The level `KVM_IRQ_LINE` last set.
    level: bool,
    /// The backend thread left the device's fd out of its poll: an access
    /// that makes the device want it again wakes the thread.
    parked: bool,
}

pub struct VirtioBus {
    memory: DeviceMemory,
    slots: Vec<Slot>,
    /// Wakes the backend thread: a parked device wants its fd polled again,
    /// or the run ends.
    wake: OwnedFd,
    stopping: AtomicBool,
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
    console::line_sink(|line: &[u8]| println!("guest hvc0: {}", String::from_utf8_lossy(line)))
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
        // hvc0's input, if asked: this process's stdin, read when it is ready.
        let input = options.input_to_hvc0.then(|| Input { source: Box::new(std::io::stdin()), fd: 0 });
        devices.push(Box::new(Console::new(console_printer(), input)));
        let urandom = File::open("/dev/urandom").map_err(|e| format!("/dev/urandom for virtio-rng: {e}"))?;
        devices.push(Box::new(Rng::new(Box::new(urandom))));
        if let Some(name) = &options.tap {
            let tap = crate::tap::open(name)?;
            devices.push(Box::new(Net::new(tap).map_err(|e| format!("the tap {name}: {e}"))?));
        }
        if let Some((cid, path)) = &options.vsock {
            devices.push(Box::new(Vsock::new(*cid, path)?));
        }
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
                backend: device.backend_fd(),
                state: Mutex::new(SlotState {
                    transport: MmioTransport::new(device, options.protected),
                    level: false,
                    parked: false,
                }),
            })
            .collect();
        // SAFETY: eventfd(2) with constant flags; the fd is owned at once.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(format!("an eventfd for the virtio backends: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `wake` is a new fd nobody else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        Ok(VirtioBus { memory, slots, wake, stopping: AtomicBool::new(false) })
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
        self.follow(vm, slot, &mut state)?;
        Ok(value)
    }

    /// After a device did something: its reports printed, its line driven
    /// to its interrupt status, and the backend thread woken if the device
    /// was parked and wants its fd polled again.
    fn follow(&self, vm: &VmFd, slot: &Slot, state: &mut SlotState) -> Result<(), String> {
        for report in state.transport.take_reports() {
            println!("hyp-vmm: {} at {:#x}: {report}", state.transport.name(), slot.node.base);
        }
        let level = state.transport.interrupt_level();
        if level != state.level {
            vm.set_irq_line(kvm_layout::spi_line(slot.node.intid), level)
                .map_err(|e| format!("KVM_IRQ_LINE of INTID {} to {}: {e}", slot.node.intid, level as u8))?;
            state.level = level;
        }
        if state.parked && state.transport.backend_wanted() {
            state.parked = false;
            self.wake();
        }
        Ok(())
    }

    /// Wakes the backend thread.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: Writes 8 bytes from `one` to the eventfd. A full counter
        // (EAGAIN) already wakes the thread.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Ends `serve_backends`.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// The backend thread: polls the backend fds of the devices that want
    /// them and lets each ready device serve its queues, until `stop`; then
    /// says how often it woke (a measure of its cost: it never spins).
    pub fn serve_backends(&self, vm: &VmFd) -> Result<(), String> {
        if self.slots.iter().all(|slot| slot.backend.is_none()) {
            return Ok(());
        }
        let mut wakes = 0u64;
        let served = self.poll_backends(vm, &mut wakes);
        println!("hyp-vmm: linux: the virtio backend thread woke {wakes} times");
        served
    }

    fn poll_backends(&self, vm: &VmFd, wakes: &mut u64) -> Result<(), String> {
        let mut polled: Vec<libc::pollfd> = Vec::with_capacity(self.slots.len() + 1);
        let mut polled_slots: Vec<&Slot> = Vec::with_capacity(self.slots.len());
        while !self.stopping.load(Ordering::SeqCst) {
            polled.clear();
            polled_slots.clear();
            polled.push(libc::pollfd { fd: self.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            for slot in &self.slots {
                let Some(fd) = slot.backend else { continue };
                let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                state.parked = !state.transport.backend_wanted();
                if !state.parked {
                    polled.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
                    polled_slots.push(slot);
                }
            }
            // SAFETY: `polled` holds `polled.len()` pollfds of open fds.
            let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll of the virtio backends: {error}"));
            }
            *wakes += 1;
            if polled[0].revents != 0 {
                let mut count = [0u8; 8];
                // SAFETY: Reads the eventfd's 8-byte counter into `count`.
                unsafe { libc::read(self.wake.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
            }
            for (entry, slot) in polled[1..].iter().zip(&polled_slots) {
                if entry.revents == 0 {
                    continue;
                }
                let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                state.transport.poll_backend(&self.memory);
                self.follow(vm, slot, &mut state)?;
            }
        }
        Ok(())
    }
}
