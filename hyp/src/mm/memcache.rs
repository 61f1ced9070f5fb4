//! The memcache: pages the host donated for the hyp's metadata (today the
//! stage-2 tables of VMs), kept as a free list whose links live in the free
//! pages themselves, so that it needs no memory of its own. The page records say
//! which donated pages are in use; the list holds exactly the others.

use crate::mm::ownership::{PageDb, PageRecord};
use crate::mm::pgtable::PageSource;
use crate::mm::phys_memory::PhysMemory;

/// A free list of donated pages.
#[derive(Default)]
pub struct Memcache {
    head: u64,
    len: u64,
}

impl Memcache {
    /// Free pages on the list.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn push(&mut self, page: u64, memory: &mut dyn PhysMemory) {
        memory.write_u64(page, self.head);
        self.head = page;
        self.len += 1;
    }

    pub fn pop(&mut self, memory: &mut dyn PhysMemory) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let page = self.head;
        self.head = memory.read_u64(page);
        self.len -= 1;
        Some(page)
    }

    /// Takes the pages of `[start, start + pages * 4K)` off the list; returns false
    /// (changing nothing) unless every one of them is on it.
    pub fn remove_range(&mut self, start: u64, pages: u64, memory: &mut dyn PhysMemory) -> bool {
        let end = start + pages * 4096;
        let inside = |p: u64| start <= p && p < end;
        let mut found = 0;
        let mut cursor = self.head;
        for _ in 0..self.len {
            found += u64::from(inside(cursor));
            cursor = memory.read_u64(cursor);
        }
        if found != pages {
            return false;
        }
        // Rebuild the list without them.
        let mut kept = Memcache::default();
        let mut cursor = self.head;
        for _ in 0..self.len {
            let next = memory.read_u64(cursor);
            if !inside(cursor) {
                kept.push(cursor, memory);
            }
            cursor = next;
        }
        *self = kept;
        true
    }
}

/// Table pages for guests from the memcache: each page taken is marked in use
/// in the records, each page given back marked free again.
pub struct MemcacheSource<'a> {
    pub memcache: &'a mut Memcache,
    pub pages: &'a mut PageDb,
    pub memory: &'a mut dyn PhysMemory,
}

impl PageSource for MemcacheSource<'_> {
    fn alloc_page(&mut self) -> Option<usize> {
        let page = self.memcache.pop(self.memory)?;
        let _ = self.pages.update(page, 1, |r| PageRecord { in_use: true, ..r });
        Some(page as usize)
    }

    fn free_page(&mut self, page: usize) {
        let page = page as u64;
        let _ = self.pages.update(page, 1, |r| PageRecord { in_use: false, ..r });
        self.memcache.push(page, self.memory);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Words(HashMap<u64, u64>);

    impl PhysMemory for Words {
        fn zero_page(&mut self, _: u64) {}
        fn read_u64(&mut self, a: u64) -> u64 {
            self.0.get(&a).copied().unwrap_or(0)
        }
        fn write_u64(&mut self, a: u64, v: u64) {
            self.0.insert(a, v);
        }
    }

    #[test]
    fn pages_come_back_in_last_in_first_out_order() {
        let (mut m, mut w) = (Memcache::default(), Words::default());
        for p in [0x1000, 0x2000, 0x3000] {
            m.push(p, &mut w);
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.pop(&mut w), Some(0x3000));
        assert_eq!(m.pop(&mut w), Some(0x2000));
        assert_eq!(m.pop(&mut w), Some(0x1000));
        assert_eq!(m.pop(&mut w), None);
    }

    #[test]
    fn ranges_come_off_whole_or_not_at_all() {
        let (mut m, mut w) = (Memcache::default(), Words::default());
        for p in [0x1000, 0x2000, 0x3000, 0x5000] {
            m.push(p, &mut w);
        }
        assert!(!m.remove_range(0x3000, 3, &mut w), "0x4000 is not free");
        assert_eq!(m.len(), 4);
        assert!(m.remove_range(0x1000, 2, &mut w));
        assert_eq!(m.len(), 2);
        let mut rest = vec![m.pop(&mut w).unwrap(), m.pop(&mut w).unwrap()];
        rest.sort();
        assert_eq!(rest, vec![0x3000, 0x5000]);
    }
}
