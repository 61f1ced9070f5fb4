//! virtio-blk (virtio 1.2 section 5.2) over a disk image file of the host:
//! reads, writes, flushes (the file's data synced to its storage before the
//! flush completes: what a guest's `fsync` relies on) and the device ID.
//! Requests are served in the vCPU thread that notified the queue.

use super::{serve_queue, Chain, DeviceError, DeviceMemory, VirtioDevice};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::Queue;
use vm_memory::ByteValued;

pub const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// The most data segments in a request (`seg_max`): the queue's size less
/// the header and the status.
const SEGMENTS: u32 = QUEUE_SIZE as u32 - 2;
/// The most data one request may move: what Linux sends at most (its
/// `max_hw_sectors` for virtio-blk is far less), so a hostile driver cannot
/// make the VMM allocate more.
const MOST_DATA: usize = 4 << 20;

/// `struct virtio_blk_outhdr`: the request's first 16 bytes.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct RequestHeader {
    kind: u32,
    priority: u32,
    sector: u64,
}
// SAFETY: Plain integers, no padding: any bytes are a valid value.
unsafe impl ByteValued for RequestHeader {}

pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    /// The ID `VIRTIO_BLK_T_GET_ID` returns (20 bytes, zero-padded).
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// The data of the request being served: kept from one request to the
    /// next (at most `MOST_DATA`), so that a request costs no allocation.
    scratch: Vec<u8>,
}

impl Block {
    /// The image `file` as a disk of whole sectors (a trailing partial sector
    /// is not reachable); `id` names it to the guest.
    pub fn new(file: File, read_only: bool, id: &str) -> Result<Block, String> {
        let size = file.metadata().map_err(|e| format!("the disk image's size: {e}"))?.len();
        let mut name = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        for (slot, byte) in name.iter_mut().zip(id.bytes()) {
            *slot = byte;
        }
        Ok(Block { file, sectors: size / SECTOR, read_only, id: name, scratch: Vec::new() })
    }

    /// One request: its status, and the bytes written into the guest's buffers.
    fn request(&mut self, chain: Chain<'_>, memory: &DeviceMemory) -> Result<u32, DeviceError> {
        let mut reader = chain.clone().reader(memory).map_err(DeviceError::from)?;
        let mut writer = chain.writer(memory).map_err(DeviceError::from)?;
        let header: RequestHeader =
            reader.read_obj().map_err(|e| DeviceError::Request(format!("no 16-byte request header: {e}")))?;
        let data_room = writer
            .available_bytes()
            .checked_sub(1)
            .ok_or_else(|| DeviceError::Request("no status byte the device may write".into()))?;
        let mut status_writer = writer.split_at(data_room).map_err(DeviceError::from)?;
        let (status, written) = match header.kind {
            VIRTIO_BLK_T_IN => self.read_sectors(header.sector, data_room, &mut writer)?,
            VIRTIO_BLK_T_OUT => (self.write_sectors(header.sector, &mut reader)?, 0),
            VIRTIO_BLK_T_FLUSH => (if self.file.sync_data().is_ok() { VIRTIO_BLK_S_OK } else { VIRTIO_BLK_S_IOERR }, 0),
            VIRTIO_BLK_T_GET_ID => {
                let len = self.id.len().min(data_room);
                writer.write_all(&self.id[..len]).map_err(|e| DeviceError::Memory(e.to_string()))?;
                (VIRTIO_BLK_S_OK, len)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        };
        status_writer.write_all(&[status as u8]).map_err(|e| DeviceError::Memory(e.to_string()))?;
        Ok(written as u32 + 1)
    }

    /// The byte offset of `count` bytes from `sector`, if they are whole
    /// sectors inside the disk.
    fn span(&self, sector: u64, count: usize) -> Option<u64> {
        let sectors = (count as u64).div_ceil(SECTOR);
        let whole = (count as u64).is_multiple_of(SECTOR) && count <= MOST_DATA;
        (whole && sector.checked_add(sectors)? <= self.sectors).then_some(sector * SECTOR)
    }

    fn read_sectors(
        &mut self,
        sector: u64,
        count: usize,
        writer: &mut virtio_queue::Writer<'_>,
    ) -> Result<(u32, usize), DeviceError> {
        let Some(offset) = self.span(sector, count) else { return Ok((VIRTIO_BLK_S_IOERR, 0)) };
        self.scratch.resize(count, 0);
        if self.file.read_exact_at(&mut self.scratch, offset).is_err() {
            return Ok((VIRTIO_BLK_S_IOERR, 0));
        }
        writer.write_all(&self.scratch).map_err(|e| DeviceError::Memory(e.to_string()))?;
        Ok((VIRTIO_BLK_S_OK, count))
    }

    fn write_sectors(&mut self, sector: u64, reader: &mut virtio_queue::Reader<'_>) -> Result<u32, DeviceError> {
        let count = reader.available_bytes();
        let Some(offset) = self.span(sector, count).filter(|_| !self.read_only) else {
            return Ok(VIRTIO_BLK_S_IOERR);
        };
        self.scratch.resize(count, 0);
        reader.read_exact(&mut self.scratch).map_err(|e| DeviceError::Memory(e.to_string()))?;
        Ok(if self.file.write_all_at(&self.scratch, offset).is_ok() { VIRTIO_BLK_S_OK } else { VIRTIO_BLK_S_IOERR })
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let read_only = if self.read_only { 1 << VIRTIO_BLK_F_RO } else { 0 };
        1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_SEG_MAX | read_only
    }

    /// `struct virtio_blk_config` up to `seg_max`: the capacity in sectors.
    fn config(&self) -> Vec<u8> {
        let mut config = Vec::with_capacity(16);
        config.extend_from_slice(&self.sectors.to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&SEGMENTS.to_le_bytes());
        config
    }

    fn process_queue(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        memory: &DeviceMemory,
    ) -> Result<bool, DeviceError> {
        let queue = queues.get_mut(index).ok_or_else(|| DeviceError::Request(format!("no queue {index}")))?;
        serve_queue(queue, memory, |chain| self.request(chain, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::device_memory::tests::{ram, FakeShares};
    use crate::virtio::test_driver::{Driver, RAM_BASE};
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress};

    fn disk(sectors: u64) -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "hyp-vmm-blk-{}-{sectors}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.set_len(sectors * SECTOR).unwrap();
        (file, path)
    }

    fn block_request(driver: &mut Driver, kind: u32, sector: u64, data: &[u8], read_len: u32) -> (u8, Vec<u8>) {
        let header = RequestHeader { kind, priority: 0, sector };
        driver.guest().write_obj(header, GuestAddress(driver.buffer(0))).unwrap();
        driver.guest().write_slice(data, GuestAddress(driver.buffer(1))).unwrap();
        let mut parts = vec![(driver.buffer(0), 16, false)];
        if !data.is_empty() {
            parts.push((driver.buffer(1), data.len() as u32, false));
        }
        if read_len > 0 {
            parts.push((driver.buffer(2), read_len, true));
        }
        parts.push((driver.buffer(3), 1, true));
        driver.submit(0, &parts);
        let mut status = [0xffu8];
        driver.guest().read_slice(&mut status, GuestAddress(driver.buffer(3))).unwrap();
        let mut read = vec![0u8; read_len as usize];
        driver.guest().read_slice(&mut read, GuestAddress(driver.buffer(2))).unwrap();
        (status[0], read)
    }

    #[test]
    fn written_sectors_reach_the_file_and_read_back() {
        let (file, path) = disk(64);
        let block = Block::new(file.try_clone().unwrap(), false, "hyp-disk").unwrap();
        let mut driver = Driver::start(Box::new(block), false);
        let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        let (status, _) = block_request(&mut driver, VIRTIO_BLK_T_OUT, 3, &data, 0);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert!(driver.transport.interrupt_level(), "the used buffer interrupts");
        let mut on_disk = vec![0u8; 1024];
        file.read_exact_at(&mut on_disk, 3 * SECTOR).unwrap();
        assert_eq!(on_disk, data);
        let (status, read) = block_request(&mut driver, VIRTIO_BLK_T_IN, 3, &[], 1024);
        assert_eq!((status, read), (VIRTIO_BLK_S_OK as u8, data));
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, VIRTIO_BLK_S_OK as u8);
        let (status, id) = block_request(&mut driver, VIRTIO_BLK_T_GET_ID, 0, &[], 20);
        assert_eq!((status, &id[..8]), (VIRTIO_BLK_S_OK as u8, &b"hyp-disk"[..]));
        // The capacity is in the configuration space.
        assert_eq!(driver.transport.read(0x100, 4), 64);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn requests_outside_the_disk_or_of_partial_sectors_fail_without_touching_it() {
        let (file, path) = disk(8);
        let mut driver = Driver::start(Box::new(Block::new(file.try_clone().unwrap(), false, "d").unwrap()), false);
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_OUT, 7, &[1; 1024], 0).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_OUT, u64::MAX, &[1; 512], 0).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_OUT, 0, &[1; 100], 0).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_IN, 8, &[], 512).0, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(block_request(&mut driver, 99, 0, &[], 0).0, VIRTIO_BLK_S_UNSUPP as u8);
        let mut on_disk = vec![0u8; 8 * SECTOR as usize];
        file.read_exact_at(&mut on_disk, 0).unwrap();
        assert!(on_disk.iter().all(|&b| b == 0), "nothing was written");
        assert!(driver.transport.live());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_read_only_disk_refuses_writes() {
        let (file, path) = disk(8);
        let mut driver = Driver::start(Box::new(Block::new(file, true, "ro").unwrap()), false);
        assert_ne!(driver.transport.read(0x10, 4) & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(block_request(&mut driver, VIRTIO_BLK_T_OUT, 0, &[1; 512], 0).0, VIRTIO_BLK_S_IOERR as u8);
        std::fs::remove_file(path).unwrap();
    }

    /// A protected guest's driver points a request at a page it did not
    /// share: the device refuses it, needs a reset, and the disk is untouched.
    #[test]
    fn a_request_into_unshared_memory_is_refused_and_the_device_needs_a_reset() {
        let (file, path) = disk(8);
        let guest = ram(RAM_BASE, 0x10_0000);
        let shares = Arc::new(FakeShares::default());
        // The rings and buffers 0 to 3 are shared; `unshared_buffer` is not.
        shares.share(&guest, RAM_BASE, RAM_BASE + 0x6000);
        let memory = DeviceMemory::shared_only(guest, shares.clone());
        let mut driver =
            Driver::start_with(Box::new(Block::new(file.try_clone().unwrap(), false, "p").unwrap()), true, memory);
        assert!(driver.transport.live());
        let (status, _) = block_request(&mut driver, VIRTIO_BLK_T_OUT, 0, &[5; 512], 0);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8, "a request in shared memory works");
        // Buffer 2 (the read's data) is in an unshared page.
        let request = RequestHeader { kind: VIRTIO_BLK_T_IN, priority: 0, sector: 0 };
        driver.guest().write_obj(request, GuestAddress(driver.buffer(0))).unwrap();
        driver.submit(
            0,
            &[(driver.buffer(0), 16, false), (driver.unshared_buffer(), 512, true), (driver.buffer(3), 1, true)],
        );
        assert!(!driver.transport.live(), "the device needs a reset");
        assert_ne!(driver.transport.status() & 64, 0);
        let reports = driver.transport.take_reports();
        assert!(reports.iter().any(|r| r.contains("may not use")), "{reports:?}");
        assert!(driver.transport.interrupt_level(), "the driver is told");
        std::fs::remove_file(path).unwrap();
    }
}
