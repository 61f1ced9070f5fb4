//! `hyp-vmm`: the user-space VMM of a Linux host: its Linux guests on
//! `/dev/kvm` (Linux's KVM API, through the rust-vmm crates), its checks of
//! the hyp's own calls on `/dev/hyp`.
//!
//! `hyp-vmm check` runs the console test guest in a non-protected and in a
//! protected VM from the host's shell: the guest's output arrives through MMIO
//! exits; the host reads the non-protected VM's memory and registers and is
//! refused the protected VM's (a read of its page kills the reader with
//! SIGBUS, its registers are refused by the hyp); after teardown every page
//! is back, the protected one zeroed, as the driver's accounting shows. Prints
//! one line per step; exits 0 only if all of them held.
//!
//! `hyp-vmm bench-memory [MIB]...` counts the instructions of a VM's memory
//! through `/dev/hyp` (create, map, teardown, reclaim: `memory_bench`).
//!
//! `hyp-vmm run --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE]
//! [--vcpus N] [--protected] [--disk PATH]... [--tap NAME] [--vsock
//! CID,PATH]` boots a Linux guest on `/dev/kvm` (see `linux_guest`, and
//! `virtio_bus` for its devices) and exits 0 if it powered off and every
//! page of its RAM came back (`guest_ram`); `hyp-vmm linux [--protected]
//! IMAGE INITRAMFS` is the same with the defaults. The command line:
//! `command_line` (`hyp-vmm --help`).

mod abort_guard;
mod dev_hyp;
mod guest_ram;
mod guests;
mod instruction_counter;
mod linux_guest;
mod memory_bench;
mod memory_guards;
mod reclaim_parts;
mod tap;
mod virtio_bus;

use dev_hyp::DevHyp;
use guest_ram::PAGE;
use hyp_abi::{Exit, VmType};
use linux_vmm::command_line::{self, Command, RunOptions};
use std::process::ExitCode;

/// One page of this process's memory, page aligned, for a guest.
struct GuestPage {
    address: *mut u8,
}

impl GuestPage {
    fn new() -> Option<GuestPage> {
        guest_ram::anonymous_memory(PAGE).map(|address| GuestPage { address })
    }

    fn load(&self, code: &[u8]) {
        // SAFETY: The page is ours and `code` is smaller than a page.
        unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), self.address, code.len().min(PAGE)) };
    }

    fn first_word(&self) -> u64 {
        // SAFETY: The page is mapped and 8-byte aligned. Only called while it
        // is readable by the host (never while a protected VM holds it).
        unsafe { core::ptr::read_volatile(self.address.cast::<u64>()) }
    }

    /// Reads the page's first word, catching a synchronous external abort
    /// (a protected VM's page: the kernel delivers SIGBUS): the word, or the
    /// signal.
    fn read_guarded(&self) -> Result<u64, i32> {
        // SAFETY: The page is mapped and page aligned.
        unsafe { abort_guard::read(self.address.cast()) }
    }
}

/// Prints a step and whether it held.
pub(crate) fn step(held: bool, what: std::fmt::Arguments<'_>) -> bool {
    println!("hyp-vmm: {}: {what}", if held { "ok" } else { "FAILED" });
    held
}

/// Runs vCPU 0 until SYSTEM_OFF, serving the console; its first line.
pub(crate) fn run_console(hyp: &DevHyp, handle: u64) -> Result<String, String> {
    let mut line = String::new();
    let mut answer = 0;
    for _ in 0..256 {
        match hyp.vcpu_run(handle, 0, answer) {
            Ok(Exit::Mmio { ipa: guests::GUEST_UART, size_bytes: 1, write: true, value }) => {
                if value != u64::from(b'\n') {
                    line.push(value as u8 as char);
                }
            }
            Ok(Exit::Mmio { ipa: guests::GUEST_UART_STATUS, write: false, .. }) => answer = guests::STATUS_ANSWER,
            Ok(Exit::Interrupted) => {}
            Ok(Exit::SystemOff) => return Ok(line),
            Ok(other) => return Err(format!("unexpected exit {other:?}")),
            Err(e) => return Err(format!("run failed: {e}")),
        }
    }
    Err("the guest did not finish".into())
}

fn console_vm(hyp: &DevHyp, ty: VmType) -> bool {
    let protected = ty == VmType::Protected;
    let (kind, tag) = if protected { ("protected", b'P') } else { ("non-protected", b'N') };
    let Some(page) = GuestPage::new() else {
        return step(false, format_args!("a page for the {kind} VM"));
    };
    page.load(guests::console());
    let code_word = page.first_word();
    let ready = hyp.vm_create(ty, 1).and_then(|handle| {
        hyp.vm_map(handle, page.address, guests::GUEST_ENTRY, 1)?;
        hyp.vcpu_init(handle, 0, guests::GUEST_ENTRY, u64::from(tag))?;
        Ok(handle)
    });
    let handle = match ready {
        Ok(handle) => handle,
        Err(e) => return step(false, format_args!("create and set up a {kind} VM: {e}")),
    };
    let mut passed = step(true, format_args!("a {kind} VM with one page of this process's memory"));
    let x0 = hyp.vcpu_get_reg(handle, 0, 0);
    let read = page.read_guarded();
    if protected {
        passed &= step(x0.is_err(), format_args!("the protected VM's registers refused: {x0:?}"));
        passed &= step(
            read == Err(libc::SIGBUS),
            format_args!("reading the protected VM's memory refused: {read:?} (signal 7 is SIGBUS)"),
        );
    } else {
        passed &= step(x0.as_ref().ok() == Some(&u64::from(tag)), format_args!("the host reads the VM's x0: {x0:?}"));
        passed &= step(read == Ok(code_word), format_args!("the host reads the non-protected VM's memory: {read:?}"));
    }
    let expected = format!("hello from guest {} R1", tag as char);
    let line = run_console(hyp, handle);
    passed &= step(
        line.as_deref() == Ok(expected.as_str()),
        format_args!("the {kind} guest ran to SYSTEM_OFF printing {line:?}"),
    );
    if protected {
        passed &= memory_guards::after_protected_run(page.address);
    }
    passed &= step(hyp.vm_teardown(handle).is_ok(), format_args!("tear the {kind} VM down"));
    if protected {
        let back = hyp.vm_reclaim(handle, guests::GUEST_ENTRY, 1);
        passed &= step(back.is_ok(), format_args!("reclaim the protected VM's page: {back:?}"));
        passed &= step(page.first_word() == 0, format_args!("the page came back zeroed: {:#x}", page.first_word()));
    } else {
        passed &= step(page.first_word() == code_word, format_args!("the lent page came back as it was"));
    }
    passed
}

fn check() -> bool {
    let hyp = match DevHyp::open() {
        Ok(hyp) => hyp,
        Err(e) => return step(false, format_args!("open /dev/hyp: {e}")),
    };
    let version = hyp.version();
    let mut passed = step(version.is_ok(), format_args!("/dev/hyp answers: ABI {version:?}"));
    passed &= console_vm(&hyp, VmType::NonProtected);
    passed &= console_vm(&hyp, VmType::Protected);
    passed &= memory_guards::shared_memory_refused(&hyp);
    passed &= memory_guards::foreign_vm_refused(&hyp);
    passed &= reclaim_parts::check(&hyp);
    let accounting = hyp.accounting();
    passed &= step(
        accounting
            .as_ref()
            .is_ok_and(|a| a.pinned == 0 && a.given == a.returned && a.given == 2 + reclaim_parts::PAGES),
        format_args!("every page given to a VM came back: {accounting:?}"),
    );
    passed
}

/// `hyp-vmm run`: the guest on `/dev/kvm`, then the look at its RAM once
/// every KVM fd of the VM is closed.
fn linux(options: &RunOptions) -> bool {
    let ty = if options.protected { VmType::Protected } else { VmType::NonProtected };
    let mut ram = match guest_ram::GuestRam::new(linux_vmm::kvm_layout::GUEST_RAM, options.memory as usize) {
        Ok(ram) => ram,
        Err(e) => return step(false, format_args!("the guest's RAM: {e}")),
    };
    let result = linux_guest::run(&mut ram, options);
    let shown = result.as_ref().map_err(|failure| failure.reason.as_str());
    let mut passed = step(result.is_ok(), format_args!("the {ty:?} Linux guest powered off: {shown:?}"));
    // A protected VM's pages are scrubbed only if the VM had them.
    let ran = result.as_ref().err().is_none_or(|failure| failure.ran);
    let back = ram.check_returned(options.protected && ran);
    passed &= step(back.is_ok(), format_args!("every page of the Linux guest came back: {back:?}"));
    passed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = command_line::parse(&args).and_then(|command| {
        if let Command::Run(options) = &command {
            options.check_files()?;
        }
        Ok(command)
    });
    let passed = match command {
        Ok(Command::Help) => {
            println!("{}", command_line::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Check) => check(),
        Ok(Command::BenchMemory(sizes)) => memory_bench::bench(&sizes),
        Ok(Command::Run(options)) => linux(&options),
        Err(error) => {
            eprintln!("hyp-vmm: {error} (usage: hyp-vmm --help)");
            return ExitCode::from(2);
        }
    };
    println!("hyp-vmm: {}", if passed { "all checks passed" } else { "checks FAILED" });
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
