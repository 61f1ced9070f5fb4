//! `hyp-vmm`'s command line: what each command takes, its checks and its
//! messages. Plain Rust without the hardware, so that its tests run on the
//! development machine (`cargo test --lib`, see scripts/test).

use std::fmt;
use std::path::Path;

/// The guest's vCPUs at most: the hyp's limit per VM.
pub const MAX_VCPUS: u32 = hyp_abi::MAX_VCPUS_PER_VM as u32;
/// The guest's RAM is mapped in 2 MiB pieces (and its boot layout is 2 MiB aligned).
const RAM_GRANULE: u64 = 2 << 20;
/// Less RAM than this cannot hold a kernel, the device tree's 2 MiB and a heap.
pub const MIN_MEMORY: u64 = 16 << 20;

pub const DEFAULT_MEMORY: u64 = 256 << 20;
pub const DEFAULT_VCPUS: u32 = 2;
pub const DEFAULT_CMDLINE: &str = "console=ttyAMA0 rdinit=/init";

pub const USAGE: &str = "\
usage: hyp-vmm run --kernel PATH [--initrd PATH] [--cmdline STR] [--memory SIZE] [--vcpus N] [--protected]
                   [--disk PATH]... [--tap NAME] [--vsock CID,PATH] [--console-input ttyAMA0|hvc0]
       hyp-vmm check
       hyp-vmm bench-memory [MIB]...
       hyp-vmm linux [--protected] IMAGE INITRAMFS
       hyp-vmm --help

hyp-vmm is the user-space VMM of a Linux host running on the hyp: run and
linux use Linux's KVM API on /dev/kvm (the hyp_dev.ko driver's, or Linux's
own KVM), check the hyp's own calls on /dev/hyp.

  run       boots an arm64 Linux kernel Image in a VM; its console (a PL011,
            ttyAMA0) is this process's stdin and stdout. Exits 0 if the guest
            powered off and every page came back.
    --kernel PATH    the kernel, an arm64 Image (uncompressed)
    --initrd PATH    an initramfs, put where the kernel finds it (/chosen)
    --cmdline STR    the kernel's command line (default: \"console=ttyAMA0 rdinit=/init\")
    --memory SIZE    the guest's RAM: MiB, or a size with M or G, a multiple
                     of 2 MiB, at least 16M (default: 256M)
    --vcpus N        vCPUs, 1 to 8, each run by a thread of this process (default: 2)
    --protected      a protected VM: the host cannot read its memory or
                     registers (default: a non-protected VM); its virtio
                     devices reach only memory it shares (its kernel needs
                     CONFIG_ARM_PKVM_GUEST and CONFIG_DMA_RESTRICTED_POOL)
    --disk PATH      a virtio-blk disk backed by the file PATH (read-write;
                     flushes reach the file's storage); again for more disks
                     (vda, vdb, ... in the order given)
    --tap NAME       a virtio-net device on the host's tap device NAME (made
                     if it does not exist; the host configures it), MAC
                     02:68:79:70:00:01, no offloads
    --vsock CID,PATH a virtio-vsock device, the guest's CID being CID (3 or
                     more): a guest connecting to the host (CID 2) on port P
                     is connected to the host's unix socket PATH_P (RST if
                     nothing listens there); a host program connecting to
                     the unix socket PATH (made by the VMM) and writing
                     \"CONNECT P\\n\" reaches the guest's port P once it reads
                     \"OK <host port>\\n\" back
    --console-input ttyAMA0|hvc0
                     which console this process's stdin goes to: the PL011
                     (default) or the virtio console
            Every guest also gets a virtio console (hvc0, output to stdout)
            and a virtio entropy device, over virtio-mmio.
  check     runs a small test guest in a non-protected and a protected VM and
            checks what the host may and may not see of each
  bench-memory
            counts the instructions of a VM's memory through /dev/hyp: for
            each size (MiB, 1 to 256; default: 1 16 256), a non-protected and
            a protected VM made, given that much of this process's memory
            (allocated and faulted in first), run to SYSTEM_OFF, torn down
            and its memory taken back; every call checked
  linux     the same as run --kernel IMAGE --initrd INITRAMFS [--protected]";

/// What the command line asks for.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Command {
    Help,
    Check,
    /// The VM sizes to count, in MiB.
    BenchMemory(Vec<u64>),
    Run(RunOptions),
}

/// The sizes `bench-memory` counts by default, in MiB.
pub const BENCH_SIZES: [u64; 3] = [1, 16, 256];
/// The largest VM `bench-memory` makes, in MiB (the host's RAM under QEMU is 1 GiB).
pub const MAX_BENCH_MIB: u64 = 256;

/// A VM to boot a kernel in.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RunOptions {
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: String,
    /// Bytes, a multiple of 2 MiB.
    pub memory: u64,
    pub vcpus: u32,
    pub protected: bool,
    /// The virtio-blk disks' image files, in order.
    pub disks: Vec<String>,
    /// The tap device of the virtio-net device.
    pub tap: Option<String>,
    /// The virtio-vsock device: the guest's CID and the unix sockets' path prefix.
    pub vsock: Option<(u64, String)>,
    /// This process's stdin goes to the virtio console (hvc0), not the PL011.
    pub input_to_hvc0: bool,
}

/// The longest tap name Linux takes (IFNAMSIZ less the NUL).
pub const MAX_TAP_NAME: usize = 15;
/// The lowest CID a guest may have: 0 to 2 are the hypervisor's and the host's.
pub const MIN_GUEST_CID: u64 = 3;

/// What is wrong with the command line; each says what to do.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum UsageError {
    NoCommand,
    UnknownCommand(String),
    UnknownOption { command: &'static str, option: String },
    MissingValue(&'static str),
    Repeated(&'static str),
    MissingKernel,
    NotASize(String),
    MemoryNotAligned(u64),
    MemoryTooSmall(u64),
    VcpusNotANumber(String),
    VcpusOutOfRange(u32),
    UnexpectedArgument { command: &'static str, argument: String },
    LinuxArguments,
    FileUnreadable { what: &'static str, path: String, reason: String },
    BadConsole(String),
    BadTapName(String),
    BadVsock(String),
    BadBenchSize(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::NoCommand => write!(f, "no command given"),
            UsageError::UnknownCommand(c) => {
                write!(f, "unknown command '{c}': the commands are run, check, bench-memory and linux")
            }
            UsageError::UnknownOption { command, option } => write!(f, "{command}: unknown option '{option}'"),
            UsageError::MissingValue(option) => write!(f, "{option} needs a value"),
            UsageError::Repeated(option) => write!(f, "{option} is given twice: give it once"),
            UsageError::MissingKernel => write!(f, "run: no kernel: give --kernel PATH (an arm64 Image)"),
            UsageError::NotASize(s) => {
                write!(f, "--memory '{s}' is not a size: give MiB, or a whole number with M or G (e.g. 512M, 2G)")
            }
            UsageError::MemoryNotAligned(bytes) => {
                write!(
                    f,
                    "--memory {bytes} bytes is not a multiple of 2 MiB: the guest's RAM is mapped in 2 MiB pieces"
                )
            }
            UsageError::MemoryTooSmall(bytes) => {
                write!(f, "--memory {} MiB is too little: give at least {} MiB", bytes >> 20, MIN_MEMORY >> 20)
            }
            UsageError::VcpusNotANumber(s) => write!(f, "--vcpus '{s}' is not a number: give 1 to {MAX_VCPUS}"),
            UsageError::VcpusOutOfRange(n) => {
                write!(f, "--vcpus {n}: a VM has 1 to {MAX_VCPUS} vCPUs (the hyp's limit per VM)")
            }
            UsageError::UnexpectedArgument { command, argument } => {
                write!(f, "{command}: unexpected argument '{argument}'")
            }
            UsageError::LinuxArguments => write!(f, "linux takes [--protected] IMAGE INITRAMFS"),
            UsageError::BadConsole(name) => {
                write!(f, "--console-input '{name}': give ttyAMA0 (the PL011) or hvc0 (the virtio console)")
            }
            UsageError::FileUnreadable { what, path, reason } => {
                write!(f, "the {what} '{path}' cannot be read: {reason}")
            }
            UsageError::BadTapName(name) => write!(
                f,
                "--tap '{name}' is not a network interface name: give 1 to {MAX_TAP_NAME} characters without '/', \
                 spaces or ':'"
            ),
            UsageError::BadVsock(value) => write!(
                f,
                "--vsock '{value}': give CID,PATH, the guest's CID a number from {MIN_GUEST_CID} to {} and PATH the \
                 unix sockets' path prefix",
                u32::MAX - 1
            ),
            UsageError::BadBenchSize(value) => {
                write!(f, "bench-memory: '{value}' is not a size: give whole MiB, 1 to {MAX_BENCH_MIB}")
            }
        }
    }
}

/// Parses the arguments after the program's name.
///
/// # Errors
///
/// What is wrong with them, as [`UsageError`].
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(UsageError::NoCommand);
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    match command.as_str() {
        "--help" | "-h" | "help" => Ok(Command::Help),
        "check" => match rest.first() {
            None => Ok(Command::Check),
            Some(a) if a.starts_with('-') => Err(UsageError::UnknownOption { command: "check", option: a.clone() }),
            Some(a) => Err(UsageError::UnexpectedArgument { command: "check", argument: a.clone() }),
        },
        "bench-memory" => parse_bench_sizes(rest).map(Command::BenchMemory),
        "run" => parse_run(rest).map(Command::Run),
        "linux" => parse_linux(rest).map(Command::Run),
        other => Err(UsageError::UnknownCommand(other.to_owned())),
    }
}

fn parse_bench_sizes(args: &[String]) -> Result<Vec<u64>, UsageError> {
    if args.is_empty() {
        return Ok(BENCH_SIZES.to_vec());
    }
    args.iter()
        .map(|arg| match arg.parse::<u64>() {
            Ok(mib) if (1..=MAX_BENCH_MIB).contains(&mib) => Ok(mib),
            _ if arg.starts_with('-') => {
                Err(UsageError::UnknownOption { command: "bench-memory", option: arg.clone() })
            }
            _ => Err(UsageError::BadBenchSize(arg.clone())),
        })
        .collect()
}

fn parse_run(args: &[String]) -> Result<RunOptions, UsageError> {
    let (mut kernel, mut initrd, mut cmdline, mut memory, mut vcpus) = (None, None, None, None, None);
    let mut protected = false;
    let mut disks = Vec::new();
    let (mut tap, mut vsock) = (None, None);
    let mut console_input: Option<bool> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        // `--option=value` and `--option value` alike.
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value =
            |name: &'static str| inline.clone().or_else(|| args.next().cloned()).ok_or(UsageError::MissingValue(name));
        match option {
            "--kernel" => set_once(&mut kernel, value("--kernel")?, "--kernel")?,
            "--initrd" => set_once(&mut initrd, value("--initrd")?, "--initrd")?,
            "--cmdline" => set_once(&mut cmdline, value("--cmdline")?, "--cmdline")?,
            "--memory" => set_once(&mut memory, parse_memory(&value("--memory")?)?, "--memory")?,
            "--vcpus" => set_once(&mut vcpus, parse_vcpus(&value("--vcpus")?)?, "--vcpus")?,
            "--protected" if inline.is_none() => protected = true,
            "--disk" => disks.push(value("--disk")?),
            "--tap" => set_once(&mut tap, parse_tap(&value("--tap")?)?, "--tap")?,
            "--vsock" => set_once(&mut vsock, parse_vsock(&value("--vsock")?)?, "--vsock")?,
            "--console-input" => {
                let to_hvc0 = match value("--console-input")?.as_str() {
                    "hvc0" => true,
                    "ttyAMA0" => false,
                    other => return Err(UsageError::BadConsole(other.to_owned())),
                };
                set_once(&mut console_input, to_hvc0, "--console-input")?;
            }
            _ if arg.starts_with('-') => {
                return Err(UsageError::UnknownOption { command: "run", option: arg.clone() });
            }
            _ => return Err(UsageError::UnexpectedArgument { command: "run", argument: arg.clone() }),
        }
    }
    Ok(RunOptions {
        kernel: kernel.ok_or(UsageError::MissingKernel)?,
        initrd,
        cmdline: cmdline.unwrap_or_else(|| DEFAULT_CMDLINE.to_owned()),
        memory: memory.unwrap_or(DEFAULT_MEMORY),
        vcpus: vcpus.unwrap_or(DEFAULT_VCPUS),
        protected,
        disks,
        tap,
        vsock,
        input_to_hvc0: console_input.unwrap_or(false),
    })
}

/// A network interface name Linux takes.
fn parse_tap(name: &str) -> Result<String, UsageError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_TAP_NAME
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if valid {
        Ok(name.to_owned())
    } else {
        Err(UsageError::BadTapName(name.to_owned()))
    }
}

/// `CID,PATH`: a guest CID (3 to 2^32 - 2: Linux's CIDs are 32-bit, and
/// the last is "any") and a path prefix.
fn parse_vsock(value: &str) -> Result<(u64, String), UsageError> {
    let bad = || UsageError::BadVsock(value.to_owned());
    let (cid, path) = value.split_once(',').ok_or_else(bad)?;
    let cid: u64 = cid.parse().map_err(|_| bad())?;
    if !(MIN_GUEST_CID..u64::from(u32::MAX)).contains(&cid) || path.is_empty() {
        return Err(bad());
    }
    Ok((cid, path.to_owned()))
}

/// `linux [--protected] IMAGE INITRAMFS`, the older form (scripts/linux-host-init).
fn parse_linux(args: &[String]) -> Result<RunOptions, UsageError> {
    let (protected, files) = match args {
        [flag, rest @ ..] if flag == "--protected" => (true, rest),
        _ => (false, args),
    };
    if let Some(option) = files.iter().find(|a| a.starts_with('-')) {
        return Err(UsageError::UnknownOption { command: "linux", option: option.clone() });
    }
    let [image, initrd] = files else {
        return Err(UsageError::LinuxArguments);
    };
    Ok(RunOptions {
        kernel: image.clone(),
        initrd: Some(initrd.clone()),
        cmdline: DEFAULT_CMDLINE.to_owned(),
        memory: DEFAULT_MEMORY,
        vcpus: DEFAULT_VCPUS,
        protected,
        disks: Vec::new(),
        tap: None,
        vsock: None,
        input_to_hvc0: false,
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, option: &'static str) -> Result<(), UsageError> {
    if slot.replace(value).is_some() {
        return Err(UsageError::Repeated(option));
    }
    Ok(())
}

/// A RAM size as QEMU's `-m` writes it: MiB, or a whole number with M or G.
fn parse_memory(text: &str) -> Result<u64, UsageError> {
    let not_a_size = || UsageError::NotASize(text.to_owned());
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        _ => (text, 20),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_size());
    }
    let number: u64 = digits.parse().map_err(|_| not_a_size())?;
    let bytes = number.checked_mul(1 << shift).ok_or_else(not_a_size)?;
    if bytes < MIN_MEMORY {
        return Err(UsageError::MemoryTooSmall(bytes));
    }
    if !bytes.is_multiple_of(RAM_GRANULE) {
        return Err(UsageError::MemoryNotAligned(bytes));
    }
    Ok(bytes)
}

fn parse_vcpus(text: &str) -> Result<u32, UsageError> {
    let vcpus: u32 = text.parse().map_err(|_| UsageError::VcpusNotANumber(text.to_owned()))?;
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(UsageError::VcpusOutOfRange(vcpus));
    }
    Ok(vcpus)
}

impl RunOptions {
    /// Checks that the kernel and the initramfs can be read, before any VM exists.
    ///
    /// # Errors
    ///
    /// [`UsageError::FileUnreadable`] naming the file and why.
    pub fn check_files(&self) -> Result<(), UsageError> {
        let files = [("kernel", Some(&self.kernel)), ("initramfs", self.initrd.as_ref())];
        let disks = self.disks.iter().map(|disk| ("disk image", Some(disk)));
        for (what, path) in files.into_iter().chain(disks) {
            let Some(path) = path else { continue };
            let reason = match std::fs::metadata(Path::new(path)) {
                Ok(meta) if meta.is_file() => continue,
                Ok(_) => "not a file".to_owned(),
                Err(e) => e.to_string(),
            };
            return Err(UsageError::FileUnreadable { what, path: path.clone(), reason });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn run(line: &str) -> Result<RunOptions, UsageError> {
        match parse(&args(line))? {
            Command::Run(options) => Ok(options),
            other => panic!("{line}: {other:?}, not run"),
        }
    }

    #[test]
    fn run_with_every_option() {
        let options = run(
            "run --kernel /Image --initrd /initrd.gz --cmdline quiet --memory 1G --vcpus 4 --protected --disk /d.img \
             --disk=/e.img --tap tap0 --vsock 3,/tmp/v.sock --console-input hvc0",
        );
        assert_eq!(
            options,
            Ok(RunOptions {
                kernel: "/Image".into(),
                initrd: Some("/initrd.gz".into()),
                cmdline: "quiet".into(),
                memory: 1 << 30,
                vcpus: 4,
                protected: true,
                disks: vec!["/d.img".into(), "/e.img".into()],
                tap: Some("tap0".into()),
                vsock: Some((3, "/tmp/v.sock".into())),
                input_to_hvc0: true,
            })
        );
    }

    #[test]
    fn console_input_goes_to_one_console() {
        assert_eq!(run("run --kernel k").map(|o| o.input_to_hvc0), Ok(false));
        assert_eq!(run("run --kernel k --console-input ttyAMA0").map(|o| o.input_to_hvc0), Ok(false));
        assert_eq!(run("run --kernel k --console-input=hvc0").map(|o| o.input_to_hvc0), Ok(true));
        assert_eq!(run("run --kernel k --console-input hvc1"), Err(UsageError::BadConsole("hvc1".into())));
        assert_eq!(
            run("run --kernel k --console-input hvc0 --console-input hvc0"),
            Err(UsageError::Repeated("--console-input"))
        );
    }

    #[test]
    fn run_defaults_and_equals_form() {
        let options = run("run --kernel=/Image --memory=512M").unwrap();
        assert_eq!(options.kernel, "/Image");
        assert_eq!(options.initrd, None);
        assert_eq!(options.cmdline, DEFAULT_CMDLINE);
        assert_eq!(options.memory, 512 << 20);
        assert_eq!(options.vcpus, 2);
        assert!(!options.protected);
        // A command line with spaces is one argument.
        let spaced = parse(&["run".into(), "--kernel".into(), "k".into(), "--cmdline".into(), "a b c".into()]);
        assert!(matches!(spaced, Ok(Command::Run(RunOptions { ref cmdline, .. })) if cmdline == "a b c"));
    }

    #[test]
    fn memory_sizes() {
        for (text, bytes) in
            [("256", 256 << 20), ("256M", 256 << 20), ("64m", 64 << 20), ("2G", 2 << 30), ("1g", 1 << 30)]
        {
            assert_eq!(parse_memory(text), Ok(bytes), "{text}");
        }
        for text in ["", "M", "1.5G", "12MG", "-4M", "lots", "0x100M", "99999999999999999999G"] {
            assert_eq!(parse_memory(text), Err(UsageError::NotASize(text.into())), "{text}");
        }
        assert_eq!(parse_memory("8M"), Err(UsageError::MemoryTooSmall(8 << 20)));
        assert_eq!(parse_memory("257M"), Err(UsageError::MemoryNotAligned(257 << 20)));
    }

    #[test]
    fn vcpu_counts() {
        assert_eq!(run("run --kernel k --vcpus 1").map(|o| o.vcpus), Ok(1));
        assert_eq!(run("run --kernel k --vcpus 8").map(|o| o.vcpus), Ok(8));
        assert_eq!(run("run --kernel k --vcpus 0"), Err(UsageError::VcpusOutOfRange(0)));
        assert_eq!(run("run --kernel k --vcpus 9"), Err(UsageError::VcpusOutOfRange(9)));
        assert_eq!(run("run --kernel k --vcpus two"), Err(UsageError::VcpusNotANumber("two".into())));
        assert_eq!(run("run --kernel k --vcpus -1"), Err(UsageError::VcpusNotANumber("-1".into())));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(parse(&[]), Err(UsageError::NoCommand));
        assert_eq!(parse(&args("start")), Err(UsageError::UnknownCommand("start".into())));
        assert_eq!(run("run"), Err(UsageError::MissingKernel));
        assert_eq!(run("run --kernel"), Err(UsageError::MissingValue("--kernel")));
        assert_eq!(
            run("run --kernel k --mem 1G"),
            Err(UsageError::UnknownOption { command: "run", option: "--mem".into() })
        );
        assert_eq!(
            run("run --kernel k extra"),
            Err(UsageError::UnexpectedArgument { command: "run", argument: "extra".into() })
        );
        assert_eq!(run("run --kernel a --kernel b"), Err(UsageError::Repeated("--kernel")));
        assert_eq!(
            parse(&args("check --all")),
            Err(UsageError::UnknownOption { command: "check", option: "--all".into() })
        );
        assert_eq!(run("linux only-an-image"), Err(UsageError::LinuxArguments));
        // Each message says what to give instead.
        assert_eq!(
            UsageError::VcpusOutOfRange(0).to_string(),
            "--vcpus 0: a VM has 1 to 8 vCPUs (the hyp's limit per VM)"
        );
        assert!(UsageError::NotASize("x".into()).to_string().contains("e.g. 512M, 2G"));
    }

    #[test]
    fn bench_memory_sizes() {
        assert_eq!(parse(&args("bench-memory")), Ok(Command::BenchMemory(vec![1, 16, 256])));
        assert_eq!(parse(&args("bench-memory 4 256")), Ok(Command::BenchMemory(vec![4, 256])));
        for bad in ["0", "257", "1M", "x"] {
            assert_eq!(parse(&args(&format!("bench-memory {bad}"))), Err(UsageError::BadBenchSize(bad.into())));
        }
        assert_eq!(
            parse(&args("bench-memory --fast")),
            Err(UsageError::UnknownOption { command: "bench-memory", option: "--fast".into() })
        );
        assert!(UsageError::BadBenchSize("0".into()).to_string().contains("1 to 256"));
    }

    #[test]
    fn tap_names_and_vsock_addresses() {
        assert_eq!(run("run --kernel k --tap hyp-tap0").map(|o| o.tap), Ok(Some("hyp-tap0".into())));
        for name in ["a/b", "sixteen-chars-xx", "a:b", ".."] {
            assert_eq!(run(&format!("run --kernel k --tap {name}")), Err(UsageError::BadTapName(name.into())));
        }
        assert_eq!(run("run --kernel k --tap a --tap b"), Err(UsageError::Repeated("--tap")));
        assert_eq!(run("run --kernel k --vsock 4294967294,/s").map(|o| o.vsock), Ok(Some((4294967294, "/s".into()))));
        for value in ["3", "2,/s", "4294967295,/s", "x,/s", "3,", ",/s", "-3,/s"] {
            assert_eq!(run(&format!("run --kernel k --vsock {value}")), Err(UsageError::BadVsock(value.into())));
        }
        assert!(UsageError::BadVsock("2,/s".into()).to_string().contains("from 3 to 4294967294"));
    }

    #[test]
    fn help_anywhere() {
        for line in ["--help", "-h", "help", "run --help", "run --kernel k -h", "check --help"] {
            assert_eq!(parse(&args(line)), Ok(Command::Help), "{line}");
        }
        for option in [
            "--kernel",
            "--initrd",
            "--cmdline",
            "--memory",
            "--vcpus",
            "--protected",
            "--disk",
            "--tap",
            "--vsock",
            "--console-input",
        ] {
            assert!(USAGE.contains(option), "the usage lacks {option}");
        }
    }

    #[test]
    fn the_older_linux_command_is_run_with_defaults() {
        let options = run("linux --protected /guest-Image /guest-initramfs.cpio.gz").unwrap();
        assert_eq!(options.kernel, "/guest-Image");
        assert_eq!(options.initrd.as_deref(), Some("/guest-initramfs.cpio.gz"));
        assert!(options.protected);
        assert_eq!((options.memory, options.vcpus), (DEFAULT_MEMORY, DEFAULT_VCPUS));
        assert!(!run("linux a b").unwrap().protected);
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("hyp-vmm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("Image");
        std::fs::write(&kernel, b"kernel").unwrap();
        let kernel = kernel.to_str().unwrap().to_owned();
        let mut options = run(&format!("run --kernel {kernel}")).unwrap();
        assert_eq!(options.check_files(), Ok(()));
        options.initrd = Some(dir.join("absent").to_str().unwrap().to_owned());
        let error = options.check_files().unwrap_err();
        assert!(matches!(error, UsageError::FileUnreadable { what: "initramfs", .. }), "{error:?}");
        assert!(error.to_string().contains("No such file"), "{error}");
        options.initrd = None;
        options.disks = vec![kernel.clone(), dir.join("no-disk").to_str().unwrap().to_owned()];
        let error = options.check_files().unwrap_err();
        assert!(matches!(error, UsageError::FileUnreadable { what: "disk image", .. }), "{error:?}");
        options.disks.clear();
        options.kernel = dir.to_str().unwrap().to_owned();
        assert!(options.check_files().unwrap_err().to_string().ends_with("not a file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
