//! virtio-rng, the entropy device (virtio 1.2 section 5.4): each buffer the
//! driver offers is filled from the host's entropy source (`/dev/urandom`).

use super::{serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::io::{Read, Write};
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::Queue;

const QUEUE_SIZE: u16 = 64;
/// The most bytes one buffer gets: Linux asks for at most a page or so; a
/// larger buffer is filled this far (the used length says how far).
const MOST_BYTES: usize = 64 << 10;

pub struct Rng {
    source: Box<dyn Read + Send>,
}

impl Rng {
    pub fn new(source: Box<dyn Read + Send>) -> Rng {
        Rng { source }
    }

    fn fill(&mut self, chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let mut writer = chain.writer(memory).map_err(DeviceError::from)?;
        let mut bytes = vec![0u8; writer.available_bytes().min(MOST_BYTES)];
        self.source.read_exact(&mut bytes).map_err(|e| DeviceError::Backend(format!("the entropy source: {e}")))?;
        writer.write_all(&bytes).map_err(|e| DeviceError::Memory(e.to_string()))?;
        Ok(bytes.len() as u32)
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn name(&self) -> &'static str {
        "virtio-rng"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        memory: &DeviceMemory,
    ) -> Result<bool, DeviceError> {
        let queue = queues.get_mut(index).ok_or_else(|| DeviceError::Request(format!("no queue {index}")))?;
        serve_queue(queue, memory, |chain| self.fill(chain, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::Driver;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn each_buffer_is_filled_from_the_source() {
        let source = std::io::repeat(0xa5);
        let mut driver = Driver::start(Box::new(Rng::new(Box::new(source))), false);
        let buffer = driver.buffer(0);
        driver.submit(0, &[(buffer, 32, true)]);
        assert_eq!(driver.used(0), (1, 32));
        let mut bytes = [0u8; 33];
        driver.guest().read_slice(&mut bytes, GuestAddress(buffer)).unwrap();
        assert!(bytes[..32].iter().all(|&b| b == 0xa5) && bytes[32] == 0);
        assert!(driver.transport.interrupt_level());
        driver.acknowledge();
        assert!(!driver.transport.interrupt_level());
    }

    #[test]
    fn a_read_only_buffer_gets_nothing() {
        let mut driver = Driver::start(Box::new(Rng::new(Box::new(std::io::repeat(1)))), false);
        let buffer = driver.buffer(0);
        driver.submit(0, &[(buffer, 32, false)]);
        assert_eq!(driver.used(0), (1, 0));
        assert_eq!(driver.guest().read_obj::<u32>(GuestAddress(buffer)).ok(), Some(0));
    }
}
