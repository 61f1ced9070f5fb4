//! virtio-console with one port (virtio 1.2 section 5.3, no multiport): the
//! guest's `hvc0`. What the guest transmits goes to the VMM's output sink;
//! what the host types waits in `input` until the driver offers receive
//! buffers.

use super::{next_chain, serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
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

pub struct Console {
    output: Sink,
    input: Arc<Mutex<VecDeque<u8>>>,
}

impl Console {
    /// A console writing to `output`, reading from `input` (filled by the VMM).
    pub fn new(output: Sink, input: Arc<Mutex<VecDeque<u8>>>) -> Console {
        Console { output, input }
    }

    fn transmit(&mut self, chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let mut reader = chain.reader(memory).map_err(DeviceError::from)?;
        let mut bytes = vec![0u8; reader.available_bytes().min(MOST_BYTES)];
        reader.read_exact(&mut bytes).map_err(|e| DeviceError::Memory(e.to_string()))?;
        (self.output)(&bytes);
        Ok(0)
    }

    /// Moves waiting input into the receive buffers the driver offered.
    fn receive(&mut self, queue: &mut Queue, memory: &DeviceMemory) -> Result<bool, DeviceError> {
        let mut input = self.input.lock().unwrap_or_else(|e| e.into_inner());
        let mut used = false;
        while !input.is_empty() {
            let Some(chain) = next_chain(queue, memory)? else { break };
            let head = chain.head_index();
            let mut writer = chain.writer(memory).map_err(DeviceError::from)?;
            let count = writer.available_bytes().min(input.len());
            let bytes: Vec<u8> = input.drain(..count).collect();
            writer.write_all(&bytes).map_err(|e| DeviceError::Memory(e.to_string()))?;
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
            (RECEIVE, [receive, _]) => self.receive(receive, memory),
            _ => Err(DeviceError::Request(format!("no queue {index}"))),
        }
    }

    fn poll_backend(&mut self, queues: &mut [Queue], memory: &DeviceMemory) -> Result<bool, DeviceError> {
        match queues {
            [receive, _] => self.receive(receive, memory),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::Driver;
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
        let input = Arc::new(Mutex::new(VecDeque::new()));
        let console = Console::new(Box::new(move |b: &[u8]| sink.lock().unwrap().extend_from_slice(b)), input.clone());
        let mut driver = Driver::start(Box::new(console), false);
        driver.guest().write_slice(b"hello\n", GuestAddress(driver.buffer(0))).unwrap();
        let buffer = driver.buffer(0);
        driver.submit(TRANSMIT, &[(buffer, 6, false)]);
        assert_eq!(&seen.lock().unwrap()[..], b"hello\n");
        // A receive buffer offered before input arrives waits for it.
        let buffer = driver.buffer(1);
        driver.submit(RECEIVE, &[(buffer, 4, true)]);
        assert_eq!(driver.used(RECEIVE).0, 0);
        input.lock().unwrap().extend(b"abcdef");
        driver.transport.poll_backend(&driver.memory);
        assert_eq!(driver.used(RECEIVE), (1, 4));
        let mut got = [0u8; 4];
        driver.guest().read_slice(&mut got, GuestAddress(buffer)).unwrap();
        assert_eq!(&got, b"abcd");
        assert_eq!(input.lock().unwrap().len(), 2, "the rest waits for the next buffer");
    }
}
