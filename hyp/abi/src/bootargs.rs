//! The boot arguments the hyp and the host shim take from `/chosen/bootargs`:
//! one grammar for both sides, one table of the words each knows, and a
//! validating parser.
//!
//! The bootargs are words separated by ASCII whitespace. A word that starts
//! with `hyp.` is the hyp's, one that starts with `shim.` the host shim's;
//! every other word belongs to someone else (Linux's `console=`, ...) and is
//! ignored. A word of either side is `name`, or `name=value` with a value of
//! the form its table entry gives ([`Form`]): one of a few fixed choices, a
//! number, or an address and a size. Numbers are decimal digits, or `0x`
//! followed by hex digits, and fit in 64 bits (no sign, no `_`, no other
//! prefix). A name the side does not know, a value not of its form, a value
//! given to a flag or missing from a word that takes one, and a name given
//! twice are each an error ([`BootArgError`]), whose message names the word
//! and lists every valid one: the caller stops instead of running with a
//! misread argument.

use core::fmt;

/// The side a word belongs to, by its prefix.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Side {
    /// `hyp.*`: read by the hyp.
    Hyp,
    /// `shim.*`: read by the host shim.
    Shim,
}

impl Side {
    /// The prefix of the side's words, dot included.
    pub const fn prefix(self) -> &'static str {
        match self {
            Side::Hyp => "hyp.",
            Side::Shim => "shim.",
        }
    }

    /// The words the side knows.
    pub const fn words(self) -> &'static [Word] {
        match self {
            Side::Hyp => HYP_WORDS,
            Side::Shim => SHIM_WORDS,
        }
    }
}

/// The form of a word's value.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Form {
    /// No value: the word is `name` alone.
    Flag,
    /// `name=choice`, one of these.
    Choice(&'static [&'static str]),
    /// `name=<number>`; the text names what the number is (`address`, `N`).
    Number(&'static str),
    /// `name=<address>,<size>`: two numbers.
    AddressSize,
}

/// One word a side knows.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Word {
    /// The name, prefix included (`hyp.exit`).
    pub name: &'static str,
    pub form: Form,
}

impl fmt::Display for Word {
    /// The word with its value form, as the documentation writes it:
    /// `hyp.exit=semihosting`, `hyp.host-kernel=<address>`,
    /// `shim.linux-guest=protected|non-protected`, `shim.console-attack`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        match self.form {
            Form::Flag => Ok(()),
            Form::Choice(choices) => {
                for (i, choice) in choices.iter().enumerate() {
                    f.write_str(if i == 0 { "=" } else { "|" })?;
                    f.write_str(choice)?;
                }
                Ok(())
            }
            Form::Number(what) => write!(f, "=<{what}>"),
            Form::AddressSize => f.write_str("=<address>,<size>"),
        }
    }
}

/// `hyp.exit=semihosting`: end runs with a semihosting exit status (QEMU
/// `-semihosting`), not only PSCI SYSTEM_OFF.
pub const HYP_EXIT: Word = Word { name: "hyp.exit", form: Form::Choice(&["semihosting"]) };
/// `hyp.selftest=stack-guard`: the hyp reads its boot stack's guard page.
pub const HYP_SELFTEST: Word = Word { name: "hyp.selftest", form: Form::Choice(&["stack-guard"]) };
/// `hyp.host-kernel=<address>`: the host is the Linux kernel Image there.
pub const HYP_HOST_KERNEL: Word = Word { name: "hyp.host-kernel", form: Form::Number("address") };
/// `hyp.dma=permissive`: the host gets its bus masters without an IOMMU.
pub const HYP_DMA: Word = Word { name: "hyp.dma", form: Form::Choice(&["permissive"]) };

/// Every `hyp.*` word.
pub const HYP_WORDS: &[Word] = &[HYP_EXIT, HYP_SELFTEST, HYP_HOST_KERNEL, HYP_DMA];

/// `shim.vm-rounds=<N>`: rounds of the 32-VM stress run.
pub const SHIM_VM_ROUNDS: Word = Word { name: "shim.vm-rounds", form: Form::Number("N") };
/// `shim.smp-rounds=<N>`: rounds per CPU of the all-CPU stress run.
pub const SHIM_SMP_ROUNDS: Word = Word { name: "shim.smp-rounds", form: Form::Number("N") };
/// `shim.linux-guest=protected|non-protected`: run a Linux guest instead of the checks.
pub const SHIM_LINUX_GUEST: Word =
    Word { name: "shim.linux-guest", form: Form::Choice(&["protected", "non-protected"]) };
/// `shim.guest-kernel=<address>,<size>`: where the Linux guest's Image is.
pub const SHIM_GUEST_KERNEL: Word = Word { name: "shim.guest-kernel", form: Form::AddressSize };
/// `shim.fuzz-calls=<N>`: hostile-host calls instead of the checks.
pub const SHIM_FUZZ_CALLS: Word = Word { name: "shim.fuzz-calls", form: Form::Number("N") };
/// `shim.fuzz-seed=<N>`: their seed.
pub const SHIM_FUZZ_SEED: Word = Word { name: "shim.fuzz-seed", form: Form::Number("N") };
/// `shim.split-stress=<N>`: block-split stress transitions instead of the checks.
pub const SHIM_SPLIT_STRESS: Word = Word { name: "shim.split-stress", form: Form::Number("N") };
/// `shim.console-attack`: the console check instead of the others.
pub const SHIM_CONSOLE_ATTACK: Word = Word { name: "shim.console-attack", form: Form::Flag };
/// `shim.reset-scrub`: the reset check (PSCI SYSTEM_RESET with a protected VM alive).
pub const SHIM_RESET_SCRUB: Word = Word { name: "shim.reset-scrub", form: Form::Flag };

/// Every `shim.*` word.
pub const SHIM_WORDS: &[Word] = &[
    SHIM_VM_ROUNDS,
    SHIM_SMP_ROUNDS,
    SHIM_LINUX_GUEST,
    SHIM_GUEST_KERNEL,
    SHIM_FUZZ_CALLS,
    SHIM_FUZZ_SEED,
    SHIM_SPLIT_STRESS,
    SHIM_CONSOLE_ATTACK,
    SHIM_RESET_SCRUB,
];

/// A number: decimal digits, or `0x` and hex digits (either case); at most
/// 64 bits. Nothing else: no sign, no `_`, no whitespace, no empty digits.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |value, byte| {
        let digit = char::from(byte).to_digit(radix)?;
        value.checked_mul(u64::from(radix))?.checked_add(u64::from(digit))
    })
}

/// A word's value, as its [`Form`] reads it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Value {
    Flag,
    /// Index into the word's choices.
    Choice(usize),
    Number(u64),
    AddressSize(u64, u64),
}

/// What is wrong with a word.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Problem {
    /// The side has no word of this name.
    Unknown,
    /// `name` alone, for a word that takes a value.
    MissingValue,
    /// `name=...` for a flag, which takes none.
    UnexpectedValue,
    /// The value is not of the word's form.
    BadValue,
    /// The name was given before.
    Duplicate,
}

/// How much of a bad word an error keeps (longer ones are cut, and say so).
pub const ERROR_WORD_BYTES: usize = 64;

/// A bad boot argument: the word (a copy, so the error outlives the device
/// tree), what is wrong with it, and the side, whose words the message lists.
#[derive(Clone, Copy, Eq, PartialEq)]
pub struct BootArgError {
    pub side: Side,
    pub problem: Problem,
    /// The known word, for every problem but [`Problem::Unknown`].
    pub known: Option<Word>,
    word: [u8; ERROR_WORD_BYTES],
    word_len: u8,
    word_cut: bool,
}

impl BootArgError {
    fn new(side: Side, problem: Problem, known: Option<Word>, word: &str) -> BootArgError {
        let mut len = word.len().min(ERROR_WORD_BYTES);
        while !word.is_char_boundary(len) {
            len -= 1;
        }
        let mut copy = [0u8; ERROR_WORD_BYTES];
        copy[..len].copy_from_slice(&word.as_bytes()[..len]);
        BootArgError { side, problem, known, word: copy, word_len: len as u8, word_cut: len < word.len() }
    }

    /// The bad word as given (cut to [`ERROR_WORD_BYTES`]).
    pub fn word(&self) -> &str {
        core::str::from_utf8(&self.word[..usize::from(self.word_len)]).unwrap_or("")
    }
}

impl fmt::Debug for BootArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootArgError")
            .field("side", &self.side)
            .field("problem", &self.problem)
            .field("word", &self.word())
            .finish()
    }
}

impl fmt::Display for BootArgError {
    /// One line: the word, what is wrong, what to do, and the side's words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = if self.word_cut { "..." } else { "" };
        write!(f, "boot argument \"{}{cut}\": ", self.word())?;
        match (self.problem, self.known) {
            (Problem::Unknown, _) | (_, None) => write!(f, "unknown {}* argument", self.side.prefix())?,
            (Problem::MissingValue, Some(word)) => write!(f, "needs a value: {word}")?,
            (Problem::UnexpectedValue, Some(word)) => write!(f, "takes no value: {word}")?,
            (Problem::BadValue, Some(word @ Word { form: Form::Choice(_), .. })) => {
                write!(f, "not a valid value: {word}")?
            }
            (Problem::BadValue, Some(word)) => write!(f, "not a number: {word}")?,
            (Problem::Duplicate, Some(word)) => write!(f, "{} is given twice", word.name)?,
        }
        write!(
            f,
            "; fix or remove it (QEMU -append, the bootloader's bootargs). Valid {}* arguments:",
            self.side.prefix()
        )?;
        for (i, word) in self.side.words().iter().enumerate() {
            write!(f, "{}{word}", if i == 0 { " " } else { ", " })?;
        }
        f.write_str(" (numbers: decimal, or hex with 0x)")
    }
}

/// Reads `value` (what follows `=`, or `None` without one) as `word` takes it.
fn read_value(word: &Word, value: Option<&str>) -> Result<Value, Problem> {
    match (word.form, value) {
        (Form::Flag, None) => Ok(Value::Flag),
        (Form::Flag, Some(_)) => Err(Problem::UnexpectedValue),
        (_, None) => Err(Problem::MissingValue),
        (Form::Choice(choices), Some(text)) => {
            choices.iter().position(|c| *c == text).map(Value::Choice).ok_or(Problem::BadValue)
        }
        (Form::Number(_), Some(text)) => parse_number(text).map(Value::Number).ok_or(Problem::BadValue),
        (Form::AddressSize, Some(text)) => {
            let (address, size) = text.split_once(',').ok_or(Problem::BadValue)?;
            match (parse_number(address), parse_number(size)) {
                (Some(address), Some(size)) => Ok(Value::AddressSize(address, size)),
                _ => Err(Problem::BadValue),
            }
        }
    }
}

/// The words of `side` in `bootargs`, each with its value or what is wrong
/// with it, in order. Words of other sides are skipped. A name given twice is
/// [`Problem::Duplicate`] the second time (and after).
pub fn words(bootargs: &str, side: Side) -> impl Iterator<Item = Result<(Word, Value), BootArgError>> + '_ {
    let table = side.words();
    let mut seen = [false; 32];
    bootargs.split_ascii_whitespace().filter(move |w| w.starts_with(side.prefix())).map(move |text| {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        let Some(index) = table.iter().position(|w| w.name == name) else {
            return Err(BootArgError::new(side, Problem::Unknown, None, text));
        };
        let word = table[index];
        let value = read_value(&word, value).map_err(|problem| BootArgError::new(side, problem, Some(word), text))?;
        // Tables have fewer than 32 words (checked by a test).
        if let Some(seen) = seen.get_mut(index) {
            if core::mem::replace(seen, true) {
                return Err(BootArgError::new(side, Problem::Duplicate, Some(word), text));
            }
        }
        Ok((word, value))
    })
}

/// A parse: every valid word's setting, and the first error (if any). With an
/// error the caller must stop (the boot goes no further); `args` then holds
/// what the valid words said, for how to stop (`hyp.exit=semihosting`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Parsed<T> {
    pub args: T,
    pub error: Option<BootArgError>,
}

impl<T> Parsed<T> {
    /// The arguments, or the first error.
    ///
    /// # Errors
    ///
    /// The first bad word.
    pub fn ok(self) -> Result<T, BootArgError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.args),
        }
    }
}

/// Collects the words of `side` into `T` with `apply`, keeping the first error.
fn parse<T: Default>(bootargs: &str, side: Side, mut apply: impl FnMut(&mut T, Word, Value)) -> Parsed<T> {
    let mut parsed = Parsed { args: T::default(), error: None };
    for word in words(bootargs, side) {
        match word {
            Ok((word, value)) => apply(&mut parsed.args, word, value),
            Err(error) => {
                parsed.error.get_or_insert(error);
            }
        }
    }
    parsed
}

/// The number of a [`Form::Number`] word (the parser gives nothing else).
fn number(value: Value) -> u64 {
    match value {
        Value::Number(n) => n,
        _ => 0,
    }
}

/// What the `hyp.*` words say.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct HypArgs {
    /// `hyp.exit=semihosting`.
    pub exit_semihosting: bool,
    /// `hyp.selftest=stack-guard`.
    pub selftest_stack_guard: bool,
    /// `hyp.host-kernel=<address>`.
    pub host_kernel: Option<u64>,
    /// `hyp.dma=permissive`.
    pub dma_permissive: bool,
}

impl HypArgs {
    /// Reads the `hyp.*` words of `bootargs`.
    pub fn parse(bootargs: &str) -> Parsed<HypArgs> {
        parse(bootargs, Side::Hyp, |args: &mut HypArgs, word, value| match word.name {
            n if n == HYP_EXIT.name => args.exit_semihosting = true,
            n if n == HYP_SELFTEST.name => args.selftest_stack_guard = true,
            n if n == HYP_HOST_KERNEL.name => args.host_kernel = Some(number(value)),
            n if n == HYP_DMA.name => args.dma_permissive = true,
            _ => {}
        })
    }
}

/// What the `shim.*` words say (`None`: not given, the shim's default).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ShimArgs {
    pub vm_rounds: Option<u64>,
    pub smp_rounds: Option<u64>,
    pub linux_guest: Option<crate::VmType>,
    /// `(address, size)` of the guest's kernel Image.
    pub guest_kernel: Option<(u64, u64)>,
    pub fuzz_calls: Option<u64>,
    pub fuzz_seed: Option<u64>,
    pub split_stress: Option<u64>,
    pub console_attack: bool,
    pub reset_scrub: bool,
}

impl ShimArgs {
    /// Reads the `shim.*` words of `bootargs`.
    pub fn parse(bootargs: &str) -> Parsed<ShimArgs> {
        parse(bootargs, Side::Shim, |args: &mut ShimArgs, word, value| match word.name {
            n if n == SHIM_VM_ROUNDS.name => args.vm_rounds = Some(number(value)),
            n if n == SHIM_SMP_ROUNDS.name => args.smp_rounds = Some(number(value)),
            n if n == SHIM_LINUX_GUEST.name => {
                args.linux_guest =
                    Some(if value == Value::Choice(0) { crate::VmType::Protected } else { crate::VmType::NonProtected })
            }
            n if n == SHIM_GUEST_KERNEL.name => {
                if let Value::AddressSize(address, size) = value {
                    args.guest_kernel = Some((address, size));
                }
            }
            n if n == SHIM_FUZZ_CALLS.name => args.fuzz_calls = Some(number(value)),
            n if n == SHIM_FUZZ_SEED.name => args.fuzz_seed = Some(number(value)),
            n if n == SHIM_SPLIT_STRESS.name => args.split_stress = Some(number(value)),
            n if n == SHIM_CONSOLE_ATTACK.name => args.console_attack = true,
            n if n == SHIM_RESET_SCRUB.name => args.reset_scrub = true,
            _ => {}
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn numbers_are_decimal_or_0x_hex() {
        assert_eq!(parse_number("0x42000000"), Some(0x4200_0000));
        assert_eq!(parse_number("0xabcDEF"), Some(0xab_cdef));
        assert_eq!(parse_number("1107296256"), Some(0x4200_0000));
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("0x0"), Some(0));
        assert_eq!(parse_number("007"), Some(7));
        assert_eq!(parse_number("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number("0xffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_number("0x0000000000000000000001"), Some(1));
    }

    #[test]
    fn hostile_numbers_are_refused() {
        for text in [
            "",
            "0x",
            "0X10",
            "x10",
            "zzz",
            "-1",
            "+1",
            "+0x1",
            "0x+1",
            "0x-1",
            "1_000",
            "0x1_0000",
            " 1",
            "1 ",
            "1e3",
            "0b101",
            "0o17",
            "12a",
            "0xg",
            "18446744073709551616",
            "99999999999999999999999",
            "0x10000000000000000",
            "0xffffffffffffffff0",
            "١٢",
            "0x١",
        ] {
            assert_eq!(parse_number(text), None, "{text:?}");
        }
    }

    #[test]
    fn hyp_words_are_read() {
        let parsed = HypArgs::parse(
            "console=ttyAMA0 hyp.exit=semihosting hyp.selftest=stack-guard hyp.host-kernel=0x42000000 hyp.dma=permissive",
        );
        assert_eq!(
            parsed.ok(),
            Ok(HypArgs {
                exit_semihosting: true,
                selftest_stack_guard: true,
                host_kernel: Some(0x4200_0000),
                dma_permissive: true
            })
        );
        assert_eq!(HypArgs::parse("").ok(), Ok(HypArgs::default()));
        assert_eq!(HypArgs::parse(" \t\n ").ok(), Ok(HypArgs::default()));
        assert_eq!(HypArgs::parse("hyp.host-kernel=1107296256").args.host_kernel, Some(0x4200_0000));
    }

    #[test]
    fn other_words_are_someone_elses() {
        // Linux's words, the shim's words, and words that only look alike.
        let args = "console=ttyAMA0 earlycon rdinit=/init shim.vm-rounds=3 hypx.foo hyp shim hyp_dma=1 x.hyp.dma=zzz";
        assert_eq!(HypArgs::parse(args).ok(), Ok(HypArgs::default()));
        let shim = ShimArgs::parse(args).ok();
        assert_eq!(shim, Ok(ShimArgs { vm_rounds: Some(3), ..ShimArgs::default() }));
    }

    fn hyp_error(args: &str) -> BootArgError {
        HypArgs::parse(args).error.unwrap_or_else(|| panic!("{args:?} accepted"))
    }

    #[test]
    fn bad_hyp_words_are_errors_that_name_the_word() {
        let cases: &[(&str, Problem, &str)] = &[
            ("hyp.foo", Problem::Unknown, "hyp.foo"),
            ("hyp.", Problem::Unknown, "hyp."),
            ("hyp.=1", Problem::Unknown, "hyp.=1"),
            ("hyp.Exit=semihosting", Problem::Unknown, "hyp.Exit=semihosting"),
            ("hyp.host-kernel=zzz", Problem::BadValue, "hyp.host-kernel=zzz"),
            ("hyp.host-kernel=", Problem::BadValue, "hyp.host-kernel="),
            ("hyp.host-kernel=0x", Problem::BadValue, "hyp.host-kernel=0x"),
            ("hyp.host-kernel=0x10000000000000000", Problem::BadValue, "hyp.host-kernel=0x10000000000000000"),
            ("hyp.host-kernel", Problem::MissingValue, "hyp.host-kernel"),
            ("hyp.dma=bogus", Problem::BadValue, "hyp.dma=bogus"),
            ("hyp.dma=", Problem::BadValue, "hyp.dma="),
            ("hyp.dma=permissive=1", Problem::BadValue, "hyp.dma=permissive=1"),
            ("hyp.exit", Problem::MissingValue, "hyp.exit"),
            ("hyp.exit=semihosting hyp.exit=semihosting", Problem::Duplicate, "hyp.exit=semihosting"),
            ("hyp.host-kernel=1 hyp.host-kernel=2", Problem::Duplicate, "hyp.host-kernel=2"),
        ];
        for &(args, problem, word) in cases {
            let error = hyp_error(args);
            assert_eq!((error.problem, error.word(), error.side), (problem, word, Side::Hyp), "{args:?}");
            assert!(error.to_string().contains(&format!("\"{word}\"")), "{error}");
        }
    }

    #[test]
    fn the_first_error_is_kept_and_valid_words_still_count() {
        let parsed = HypArgs::parse("hyp.exit=semihosting hyp.dma=bogus hyp.foo hyp.selftest=stack-guard");
        assert_eq!(parsed.error.map(|e| e.word().to_string()), Some("hyp.dma=bogus".to_string()));
        assert!(parsed.args.exit_semihosting && parsed.args.selftest_stack_guard && !parsed.args.dma_permissive);
    }

    #[test]
    fn messages_list_every_valid_word_with_its_form() {
        assert_eq!(
            hyp_error("hyp.host-kernel=zzz").to_string(),
            "boot argument \"hyp.host-kernel=zzz\": not a number: hyp.host-kernel=<address>; fix or remove it \
             (QEMU -append, the bootloader's bootargs). Valid hyp.* arguments: hyp.exit=semihosting, \
             hyp.selftest=stack-guard, hyp.host-kernel=<address>, hyp.dma=permissive (numbers: decimal, or hex \
             with 0x)"
        );
        assert_eq!(
            hyp_error("hyp.frob=1").to_string(),
            "boot argument \"hyp.frob=1\": unknown hyp.* argument; fix or remove it (QEMU -append, the \
             bootloader's bootargs). Valid hyp.* arguments: hyp.exit=semihosting, hyp.selftest=stack-guard, \
             hyp.host-kernel=<address>, hyp.dma=permissive (numbers: decimal, or hex with 0x)"
        );
        assert!(hyp_error("hyp.dma=bogus").to_string().contains("not a valid value: hyp.dma=permissive;"));
        assert!(hyp_error("hyp.exit").to_string().contains("needs a value: hyp.exit=semihosting;"));
        assert!(hyp_error("hyp.dma=permissive hyp.dma=permissive").to_string().contains("hyp.dma is given twice;"));
        let shim = ShimArgs::parse("shim.frob").error.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            shim,
            "boot argument \"shim.frob\": unknown shim.* argument; fix or remove it (QEMU -append, the \
             bootloader's bootargs). Valid shim.* arguments: shim.vm-rounds=<N>, shim.smp-rounds=<N>, \
             shim.linux-guest=protected|non-protected, shim.guest-kernel=<address>,<size>, shim.fuzz-calls=<N>, \
             shim.fuzz-seed=<N>, shim.split-stress=<N>, shim.console-attack, shim.reset-scrub (numbers: decimal, \
             or hex with 0x)"
        );
    }

    #[test]
    fn long_and_non_ascii_words_are_cut_on_a_character_boundary() {
        let long = format!("hyp.{}", "é".repeat(100));
        let error = hyp_error(&long);
        assert!(error.word().len() <= ERROR_WORD_BYTES && long.starts_with(error.word()));
        assert!(error.to_string().starts_with(&format!("boot argument \"{}...\": unknown", error.word())));
    }

    #[test]
    fn shim_words_are_read() {
        let parsed = ShimArgs::parse(
            "hyp.exit=semihosting shim.vm-rounds=1000 shim.smp-rounds=0x10 shim.linux-guest=non-protected \
             shim.guest-kernel=0x60000000,31457792 shim.fuzz-calls=100000 shim.fuzz-seed=2026 \
             shim.split-stress=5 shim.console-attack shim.reset-scrub",
        );
        assert_eq!(
            parsed.ok(),
            Ok(ShimArgs {
                vm_rounds: Some(1000),
                smp_rounds: Some(16),
                linux_guest: Some(crate::VmType::NonProtected),
                guest_kernel: Some((0x6000_0000, 31_457_792)),
                fuzz_calls: Some(100_000),
                fuzz_seed: Some(2026),
                split_stress: Some(5),
                console_attack: true,
                reset_scrub: true,
            })
        );
        assert_eq!(ShimArgs::parse("shim.linux-guest=protected").args.linux_guest, Some(crate::VmType::Protected));
    }

    #[test]
    fn bad_shim_words_are_errors() {
        let cases: &[(&str, Problem)] = &[
            ("shim.fuzz-calls=abc", Problem::BadValue),
            ("shim.fuzz-calls=", Problem::BadValue),
            ("shim.fuzz-calls", Problem::MissingValue),
            ("shim.vm-rounds=-1", Problem::BadValue),
            ("shim.linux-guest=yes", Problem::BadValue),
            ("shim.guest-kernel=0x60000000", Problem::BadValue),
            ("shim.guest-kernel=0x60000000,", Problem::BadValue),
            ("shim.guest-kernel=,5", Problem::BadValue),
            ("shim.guest-kernel=1,2,3", Problem::BadValue),
            ("shim.console-attack=1", Problem::UnexpectedValue),
            ("shim.reset-scrub=", Problem::UnexpectedValue),
            ("shim.frob", Problem::Unknown),
            ("shim.reset-scrub shim.reset-scrub", Problem::Duplicate),
        ];
        for &(args, problem) in cases {
            let error = ShimArgs::parse(args).error;
            assert_eq!(error.map(|e| (e.problem, e.side)), Some((problem, Side::Shim)), "{args:?}");
        }
        // The hyp's words are not the shim's business, nor the other way round.
        assert_eq!(ShimArgs::parse("hyp.frob=zzz").error, None);
        assert_eq!(HypArgs::parse("shim.frob=zzz").error, None);
    }

    #[test]
    fn tables_are_well_formed() {
        for side in [Side::Hyp, Side::Shim] {
            let words = side.words();
            assert!(words.len() < 32, "the duplicate check tracks at most 32 words");
            for (i, word) in words.iter().enumerate() {
                assert!(word.name.starts_with(side.prefix()), "{}", word.name);
                assert!(!word.name.contains(['=', ' ']), "{}", word.name);
                assert!(words[..i].iter().all(|w| w.name != word.name), "{} twice", word.name);
            }
        }
    }
}
