//! Running `target/image/hyp.img` under QEMU for the boot tests: one QEMU process
//! per test, its console captured, a hard timeout, and the exit status kept.
//!
//! The default QEMU command line is the one of `scripts/run` (taken from
//! `scripts/lib.sh`, so that the two never drift apart); tests append arguments,
//! which QEMU lets override the earlier ones.

pub mod conformance;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a boot produced.
#[derive(Debug)]
pub struct Boot {
    /// QEMU's exit status; `None` if it was killed at the timeout.
    pub status: Option<i32>,
    /// Everything QEMU wrote to stdout (the serial console), then to stderr.
    pub console: String,
    pub elapsed: Duration,
}

impl Boot {
    /// Panics (with the whole console) unless every marker appears, in order.
    pub fn assert_markers_in_order(&self, markers: &[&str]) {
        let mut rest = self.console.as_str();
        for marker in markers {
            match rest.find(marker) {
                Some(at) => rest = &rest[at + marker.len()..],
                None => panic!("marker {marker:?} missing (or out of order); console:\n{}", self.console),
            }
        }
    }

    /// Panics unless none of `words` appears.
    pub fn assert_absent(&self, words: &[&str]) {
        for word in words {
            assert!(!self.console.contains(word), "{word:?} on the console:\n{}", self.console);
        }
    }

    /// Panics unless QEMU exited by itself with `expected`.
    pub fn assert_status(&self, expected: i32) {
        assert_eq!(self.status, Some(expected), "exit status; console:\n{}", self.console);
    }

    /// Panics unless every marker appears, in order, nothing failed or
    /// panicked, and QEMU exited with 0.
    pub fn assert_passed(&self, markers: &[&str]) {
        self.assert_markers_in_order(markers);
        self.assert_absent(&["FAILED", "PANIC"]);
        self.assert_status(0);
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The image under test: `HYP_IMAGE` or `target/image/hyp.img`.
pub fn image() -> PathBuf {
    let path = std::env::var_os("HYP_IMAGE").map_or_else(|| repo_root().join("target/image/hyp.img"), PathBuf::from);
    assert!(path.exists(), "{} does not exist: run scripts/build-image (scripts/test does)", path.display());
    path
}

/// The production image (`scripts/build-image --production`): the hyp without
/// the debug hypercalls, `HYP_PRODUCTION_IMAGE` or `target/image/hyp-production.img`.
pub fn production_image() -> PathBuf {
    let path = std::env::var_os("HYP_PRODUCTION_IMAGE")
        .map_or_else(|| repo_root().join("target/image/hyp-production.img"), PathBuf::from);
    assert!(
        path.exists(),
        "{} does not exist: run scripts/build-image --production (scripts/test does)",
        path.display()
    );
    path
}

/// The default QEMU arguments, from `scripts/lib.sh`.
pub fn default_args() -> Vec<String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib.sh && qemu_default_args")
        .current_dir(repo_root())
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "qemu_default_args failed");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

/// The child's stdout and stderr (both piped), in that order.
fn output_pipes(child: &mut Child) -> [Box<dyn Read + Send>; 2] {
    [Box::new(child.stdout.take().expect("piped")), Box::new(child.stderr.take().expect("piped"))]
}

/// Waits for `child`, calling `each_poll` every 20 ms, until it exits (its
/// status) or `timeout` has passed since `start` (then it is killed: `None`).
fn wait_or_kill(child: &mut Child, start: Instant, timeout: Duration, mut each_poll: impl FnMut()) -> Option<i32> {
    loop {
        each_poll();
        if let Some(status) = child.try_wait().expect("wait works") {
            return status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args`, capturing stdout and stderr, killing it after `timeout`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Boot {
    let start = Instant::now();
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the program starts");
    let (tx, rx) = mpsc::channel();
    for (index, mut pipe) in output_pipes(&mut child).into_iter().enumerate() {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((index, buf));
        });
    }
    drop(tx);
    let status = wait_or_kill(&mut child, start, timeout, || {});
    // stdout first, then stderr: deterministic order for the marker checks.
    let mut outputs: Vec<(usize, Vec<u8>)> = rx.iter().collect();
    outputs.sort_by_key(|(index, _)| *index);
    let console = outputs.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>().join("");
    Boot { status, console, elapsed: start.elapsed() }
}

/// Boots the image with the default arguments plus `extra`, within `timeout`.
pub fn boot(extra: &[&str], timeout: Duration) -> Boot {
    boot_image(&image(), extra, timeout)
}

/// Boots `image` with the default arguments plus `extra`, within `timeout`.
pub fn boot_image(image: &Path, extra: &[&str], timeout: Duration) -> Boot {
    let mut command = Command::new("qemu-system-aarch64");
    command.args(default_args()).arg("-kernel").arg(image).args(extra);
    run_with_timeout(command, timeout)
}

/// Boots the image with the default arguments plus `extra`, typing on the
/// serial console as it goes: for each `(prompt, input)` of `script`, once
/// `prompt` has appeared (after the previous one), `input` is written to QEMU's
/// stdin (the console with `-nographic`). Used to drive U-Boot's command line.
pub fn boot_typing(extra: &[&str], script: &[(&str, &str)], timeout: Duration) -> Boot {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let start = Instant::now();
    let mut child = Command::new("qemu-system-aarch64")
        .args(default_args())
        .arg("-kernel")
        .arg(image())
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("QEMU starts");
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let readers: Vec<_> = output_pipes(&mut child)
        .into_iter()
        .map(|mut pipe| {
            let console = Arc::clone(&console);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    console.lock().expect("not poisoned").extend_from_slice(&chunk[..n]);
                }
            })
        })
        .collect();
    let mut stdin = child.stdin.take().expect("piped");
    let (mut step, mut seen) = (0, 0);
    let status = wait_or_kill(&mut child, start, timeout, || {
        if let Some(&(prompt, input)) = script.get(step) {
            let text = String::from_utf8_lossy(&console.lock().expect("not poisoned")).into_owned();
            if let Some(at) = text.get(seen..).and_then(|rest| rest.find(prompt)) {
                seen += at + prompt.len();
                let _ = stdin.write_all(input.as_bytes());
                let _ = stdin.flush();
                step += 1;
            }
        }
    });
    for reader in readers {
        let _ = reader.join();
    }
    let console = String::from_utf8_lossy(&console.lock().expect("not poisoned")).into_owned();
    Boot { status, console, elapsed: start.elapsed() }
}
