//! The memcache: pages the host donated for the hyp's metadata (today the
//! stage-2 tables of VMs), kept as a doubly linked free list whose links live
//! in the free pages themselves (the next page's address in the first word,
//! the previous one's in the second), so that it needs no memory of its own
//! and every operation is O(1) per page: taking a given page off the list (the
//! host reclaiming it) unlinks it from its neighbours instead of walking the
//! list. The page records say which donated pages are in use; the list holds
//! exactly the others. The host cannot write the links: donated pages are out
//! of its stage-2 (and of its devices').

use crate::mm::ownership::{PageDb, PageRecord};
use crate::mm::pgtable::PageSource;
use crate::mm::phys_memory::PhysMemory;

/// The link that points nowhere (0 is a page on boards whose RAM starts there).
const NONE: u64 = u64::MAX;
/// Where a free page keeps its links.
const NEXT: u64 = 0;
const PREV: u64 = 8;

/// A free list of donated pages.
pub struct Memcache {
    head: u64,
    len: u64,
}

impl Default for Memcache {
    fn default() -> Self {
        Memcache { head: NONE, len: 0 }
    }
}

impl Memcache {
    /// Free pages on the list.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn push(&mut self, page: u64, memory: &mut dyn PhysMemory) {
        memory.write_u64(page + NEXT, self.head);
        memory.write_u64(page + PREV, NONE);
        if self.head != NONE {
            memory.write_u64(self.head + PREV, page);
        }
        self.head = page;
        self.len += 1;
    }

    pub fn pop(&mut self, memory: &mut dyn PhysMemory) -> Option<u64> {
        if self.len == 0 || self.head == NONE {
            return None;
        }
        let page = self.head;
        self.unlink(page, memory);
        Some(page)
    }

    /// Whether `page` is on the list as its neighbours see it (its links and
    /// theirs agree). The page records are the authority on membership; this
    /// check keeps a broken record from corrupting the list.
    fn is_linked(&self, page: u64, memory: &mut dyn PhysMemory) -> bool {
        let (next, prev) = (memory.read_u64(page + NEXT), memory.read_u64(page + PREV));
        if next == page || prev == page || (next == prev && next != NONE) {
            return false;
        }
        let from_prev = if prev == NONE { self.head == page } else { memory.read_u64(prev + NEXT) == page };
        let from_next = next == NONE || memory.read_u64(next + PREV) == page;
        from_prev && from_next
    }

    /// Takes `page`, which is on the list, off it.
    fn unlink(&mut self, page: u64, memory: &mut dyn PhysMemory) {
        let (next, prev) = (memory.read_u64(page + NEXT), memory.read_u64(page + PREV));
        if prev == NONE {
            self.head = next;
        } else {
            memory.write_u64(prev + NEXT, next);
        }
        if next != NONE {
            memory.write_u64(next + PREV, prev);
        }
        self.len -= 1;
    }

    /// Takes the pages of `[start, start + pages * 4K)` off the list, O(1) per
    /// page; returns false (changing nothing) unless every one of them is on
    /// it. The caller has checked in the page records that they are free
    /// donated pages, which are exactly the list's.
    pub fn remove_range(&mut self, start: u64, pages: u64, memory: &mut dyn PhysMemory) -> bool {
        let end = start + pages * 4096;
        if pages > self.len || !(start..end).step_by(4096).all(|page| self.is_linked(page, memory)) {
            return false;
        }
        // Unlinking one keeps the others linked: each updates its neighbours.
        for page in (start..end).step_by(4096) {
            self.unlink(page, memory);
        }
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

    /// The list's pages from head to tail, checking every back link.
    fn walk(m: &Memcache, w: &mut Words) -> Vec<u64> {
        let (mut pages, mut prev, mut page) = (Vec::new(), NONE, m.head);
        while page != NONE {
            assert_eq!(w.read_u64(page + PREV), prev, "back link of {page:#x}");
            pages.push(page);
            prev = page;
            page = w.read_u64(page + NEXT);
        }
        assert_eq!(pages.len() as u64, m.len());
        pages
    }

    #[test]
    fn removing_from_head_middle_tail_and_page_zero_keeps_both_directions_linked() {
        let (mut m, mut w) = (Memcache::default(), Words::default());
        // Page 0 is RAM on some boards: it must be an ordinary member.
        for p in [0x0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000] {
            m.push(p, &mut w);
        }
        assert!(m.remove_range(0x6000, 1, &mut w), "the head");
        assert!(m.remove_range(0x0, 1, &mut w), "the tail, page 0");
        assert!(m.remove_range(0x2000, 2, &mut w), "two in the middle, next to each other");
        assert_eq!(walk(&m, &mut w), vec![0x5000, 0x4000, 0x1000]);
        assert!(!m.remove_range(0x2000, 1, &mut w), "no longer on the list");
        assert!(!m.remove_range(0x0, 1, &mut w), "page 0 is gone too");
        assert_eq!(walk(&m, &mut w), vec![0x5000, 0x4000, 0x1000]);
        assert!(m.remove_range(0x4000, 2, &mut w));
        assert!(m.remove_range(0x1000, 1, &mut w));
        assert_eq!((walk(&m, &mut w), m.pop(&mut w)), (vec![], None));
        m.push(0x9000, &mut w);
        assert_eq!(walk(&m, &mut w), vec![0x9000]);
    }

    #[test]
    fn a_random_mix_matches_a_set() {
        for seed in 0..20 {
            random_mix(seed);
        }
    }

    fn random_mix(seed: u64) {
        let mut rng = testkit::rng::Rng::new(0x3ac4e + seed);
        let (mut m, mut w) = (Memcache::default(), Words::default());
        let mut model = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let page = rng.below(64) * 0x1000;
            match rng.below(3) {
                0 if !model.contains(&page) => {
                    m.push(page, &mut w);
                    model.insert(page);
                }
                1 => {
                    let pages = 1 + rng.below(3);
                    let all = (0..pages).all(|i| model.contains(&(page + i * 0x1000)));
                    // Only ranges the records would pass, as in the hyp; the
                    // links themselves refuse the others.
                    assert_eq!(m.remove_range(page, pages, &mut w), all, "{page:#x} x{pages}");
                    if all {
                        (0..pages).for_each(|i| {
                            model.remove(&(page + i * 0x1000));
                        });
                    }
                }
                _ => {
                    if let Some(p) = m.pop(&mut w) {
                        assert!(model.remove(&p), "popped {p:#x}, not free");
                    } else {
                        assert!(model.is_empty());
                    }
                }
            }
            if rng.below(500) == 0 {
                let mut listed = walk(&m, &mut w);
                listed.sort();
                assert_eq!(listed, model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
