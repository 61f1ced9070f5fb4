//! virtio-console with one port (virtio 1.2 section 5.3, no multiport): the
//! guest's `hvc0`. What the guest transmits goes to the VMM's output sink;
//! its input, if it has one (the VMM's stdin with `--console hvc0`), is read
//! when the bus's backend thread finds it ready and the driver has offered
//! receive buffers.

use super::{next_chain, serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::RawFd;
use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use virtio_queue::{Queue, QueueT};

const RECEIVE: usize = 0;
const TRANSMIT: usize = 1;
const QUEUE_SIZE: u16 = 64;
/// The most bytes taken from one transmit buffer.
const MOST_BYTES: usize = 64 << 10;

/// Where the guest's output goes, a chunk at a time.
pub type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// The longest line `line_sink` holds back: beyond, what it has is passed on
/// as a line (a guest that never sends a newline cannot grow it further).
pub const MOST_LINE: usize = 4096;

/// A sink that hands `print` the output a line at a time (without its
/// newline; carriage returns dropped), or `MOST_LINE` bytes of a longer one.
pub fn line_sink(mut print: impl FnMut(&[u8]) + Send + 'static) -> Sink {
    let mut line = Vec::new();
    Box::new(move |bytes: &[u8]| {
        for &byte in bytes {
            match byte {
                b'\n' => {
                    print(&line);
                    line.clear();
                }
                b'\r' => {}
                _ => {
                    line.push(byte);
                    if line.len() >= MOST_LINE {
                        print(&line);
                        line.clear();
                    }
                }
            }
        }
    })
}

/// The most input read at once, and so held while the guest offers no buffer.
const MOST_INPUT: usize = 4096;

/// The console's input: a readable file and its descriptor for the bus to poll.
pub struct Input {
    pub source: Box<dyn Read + Send>,
    pub fd: RawFd,
}

pub struct Console {
    output: Sink,
    input: Option<Input>,
    /// Input read but not yet taken by a receive buffer (at most `MOST_INPUT`).
    pending: Vec<u8>,
    /// The driver offered no receive buffer for `pending`: stop polling the
    /// input until it notifies the receive queue.
    starved: bool,
    /// The input reached its end (or failed): nothing more to poll.
    ended: bool,
}

impl Console {
    /// A console writing to `output`, reading from `input` if there is one.
    pub fn new(output: Sink, input: Option<Input>) -> Console {
        Console { output, input, pending: Vec::new(), starved: false, ended: false }
    }

    /// One read of the input (the backend thread found it ready): into
    /// `pending`, which is empty.
    fn read_input(&mut self) {
        let Some(input) = self.input.as_mut() else { return };
        self.pending.resize(MOST_INPUT, 0);
        match input.source.read(&mut self.pending) {
            Ok(count) => {
                self.pending.truncate(count);
                self.ended = count == 0;
            }
            Err(e) => {
                self.pending.clear();
                self.ended = !matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock);
            }
        }
    }

    fn transmit(&mut self, chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let mut reader = chain.reader(memory).map_err(DeviceError::from)?;
        let mut bytes = vec![0u8; reader.available_bytes().min(MOST_BYTES)];
        reader.read_exact(&mut bytes).map_err(|e| DeviceError::Memory(e.to_string()))?;
        (self.output)(&bytes);
        Ok(0)
    }

    /// Moves input into the receive buffers the driver offered: what is
    /// pending, then (if `ready`: the input can be read without waiting) one
    /// read's worth more.
    fn receive(&mut self, queue: &mut Queue, memory: &DeviceMemory, mut ready: bool) -> Result<bool, DeviceError> {
        let mut used = false;
        loop {
            if self.pending.is_empty() {
                if !ready || self.ended {
                    break;
                }
                self.read_input();
                ready = false;
                if self.pending.is_empty() {
                    break;
                }
            }
            let Some(chain) = next_chain(queue, memory)? else {
                self.starved = true;
                break;
            };
            let head = chain.head_index();
            let mut writer = chain.writer(memory).map_err(DeviceError::from)?;
            let count = writer.available_bytes().min(self.pending.len());
            writer.write_all(&self.pending[..count]).map_err(|e| DeviceError::Memory(e.to_string()))?;
            self.pending.drain(..count);
            queue.add_used(memory, head, count as u32)?;
            used = true;
        }
        Ok(used && queue.needs_notification(memory)?)
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_CONSOLE
    }

    fn name(&self) -> &'static str {
        "virtio-console"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    /// `struct virtio_console_config`: no size, one port, no emergency write.
    fn config(&self) -> Vec<u8> {
        vec![0; 12]
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
                self.starved = false;
                self.receive(receive, memory, false)
            }
            _ => Err(DeviceError::Request(format!("no queue {index}"))),
        }
    }

    fn poll_backend(&mut self, queues: &mut [Queue], memory: &DeviceMemory) -> Result<bool, DeviceError> {
        match queues {
            [receive, _] => self.receive(receive, memory, true),
            _ => Ok(false),
        }
    }

    fn backend_fd(&self) -> Option<RawFd> {
        self.input.as_ref().map(|input| input.fd)
    }

    fn backend_wanted(&self) -> bool {
        self.input.is_some() && !self.ended && !self.starved
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.starved = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::Driver;
    use std::fs::File;
    use std::os::fd::FromRawFd;
    use std::sync::{Arc, Mutex};
    use vm_memory::{Bytes, GuestAddress};

    /// A guest that never sends a newline: the line sink passes its output
    /// on in `MOST_LINE` pieces instead of holding all of it.
    #[test]
    fn the_line_sink_holds_back_at_most_one_bounded_line() {
        let printed = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let lines = printed.clone();
        let mut sink = line_sink(move |line: &[u8]| lines.lock().unwrap().push(line.to_vec()));
        sink(b"one\r\ntw");
        sink(b"o\n");
        for _ in 0..3 {
            sink(&[b'x'; MOST_LINE]);
        }
        sink(b"y\n");
        let printed = printed.lock().unwrap();
        assert_eq!(printed.len(), 6);
        assert_eq!(printed[0], b"one");
        assert_eq!(printed[1], b"two");
        assert!(printed[2..5].iter().all(|line| line[..] == [b'x'; MOST_LINE]));
        assert_eq!(printed[5], b"y");
    }

    #[test]
    fn output_reaches_the_sink_and_input_the_receive_buffers() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        // The input: a pipe, whose write end the test holds.
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills both descriptors; each is owned once below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: Fresh descriptors from pipe(2), owned by these files only.
        let (reader, mut writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let input = Input { source: Box::new(reader), fd: fds[0] };
        let console = Console::new(Box::new(move |b: &[u8]| sink.lock().unwrap().extend_from_slice(b)), Some(input));
        let mut driver = Driver::start(Box::new(console), false);
        driver.guest().write_slice(b"hello\n", GuestAddress(driver.buffer(0))).unwrap();
        let buffer = driver.buffer(0);
        driver.submit(TRANSMIT, &[(buffer, 6, false)]);
        assert_eq!(&seen.lock().unwrap()[..], b"hello\n");
        // Input arrives before any receive buffer: it is read, held, and the
        // console stops asking for more until the driver offers one.
        assert!(driver.transport.backend_wanted());
        writer.write_all(b"abcdef").unwrap();
        driver.transport.poll_backend(&driver.memory);
        assert!(!driver.transport.backend_wanted(), "starved: not polled");
        // A 4-byte buffer takes the first four, a second the rest.
        let buffer = driver.buffer(1);
        driver.submit(RECEIVE, &[(buffer, 4, true)]);
        assert_eq!(driver.used(RECEIVE), (1, 4));
        let mut got = [0u8; 4];
        driver.guest().read_slice(&mut got, GuestAddress(buffer)).unwrap();
        assert_eq!(&got, b"abcd");
        let buffer = driver.buffer(2);
        driver.submit(RECEIVE, &[(buffer, 16, true)]);
        assert_eq!(driver.used(RECEIVE), (2, 2));
        assert!(driver.transport.backend_wanted(), "polled again");
        // The input's end: nothing more to poll.
        drop(writer);
        driver.transport.poll_backend(&driver.memory);
        assert!(!driver.transport.backend_wanted());
        assert!(driver.transport.live());
    }
}
