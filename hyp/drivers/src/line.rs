//! A console line formatted on the stack, so that it can be written out in one
//! go, with no lock held while it is being formatted.

use core::fmt;

/// What a truncated line ends with.
const TRUNCATED: &[u8] = b" [...]\n";

/// Up to `N` bytes of text; what does not fit is cut, and the line then ends
/// with ` [...]` and a newline.
pub struct LineBuffer<const N: usize> {
    bytes: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    const ROOM: usize = N.saturating_sub(TRUNCATED.len());

    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0, truncated: false }
    }

    /// The text, marked if it was cut.
    pub fn as_bytes(&mut self) -> &[u8] {
        if self.truncated && self.len <= Self::ROOM {
            let end = (self.len + TRUNCATED.len()).min(N);
            self.bytes[self.len..end].copy_from_slice(&TRUNCATED[..end - self.len]);
            self.len = end;
        }
        &self.bytes[..self.len]
    }
}

impl<const N: usize> fmt::Write for LineBuffer<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = Self::ROOM.saturating_sub(self.len);
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.truncated = true;
        }
        // Never an error: a long line is cut, not lost.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn a_line_that_fits_is_kept_whole() {
        let mut line = LineBuffer::<64>::new();
        let level = "INFO";
        let _ = writeln!(line, "[hyp {level}] {}", 42);
        assert_eq!(line.as_bytes(), b"[hyp INFO] 42\n");
    }

    #[test]
    fn a_long_line_is_cut_and_marked() {
        let mut line = LineBuffer::<32>::new();
        for _ in 0..100 {
            let _ = line.write_str("x");
        }
        let _ = line.write_str("\n");
        let bytes = line.as_bytes();
        assert_eq!(bytes.len(), 32);
        assert!(bytes.ends_with(b"x [...]\n"), "{:?}", core::str::from_utf8(bytes));
        // Asking again changes nothing.
        assert_eq!(line.as_bytes().len(), 32);
    }
}
