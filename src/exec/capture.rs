//! Bounded capture of a child's output: the first and the last bytes, and a count of the rest.
//!
//! Owns the buffer only; reading the pipe is `exec`'s job. Invariant: memory stays under
//! `head + 2 × tail` bytes however much the child writes.

/// What the marker of omitted output starts and ends with: redaction looks for it to catch
/// a secret cut in two (`Redactor::redact_cut`).
pub const OMITTED_START: &str = "[… ";
pub const OMITTED_END: &str = " bytes omitted …]";

#[derive(Debug)]
pub struct HeadTail {
    head: Vec<u8>,
    tail: Vec<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl HeadTail {
    pub fn new(head_cap: usize, tail_cap: usize) -> Self {
        HeadTail {
            head: Vec::new(),
            tail: Vec::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.head.len() < self.head_cap {
            let take = bytes.len().min(self.head_cap - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.is_empty() || self.tail_cap == 0 {
            return;
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * self.tail_cap {
            let excess = self.tail.len() - self.tail_cap;
            self.tail.drain(..excess);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Head, a marker with the omitted byte count (`OMITTED_START` N `OMITTED_END`), tail;
    /// invalid UTF-8 shown lossily.
    pub fn text(&self) -> String {
        let tail_start = self.tail.len().saturating_sub(self.tail_cap);
        let tail = &self.tail[tail_start..];
        let omitted = self.total - self.head.len() as u64 - tail.len() as u64;
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if omitted > 0 {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{OMITTED_START}{omitted}{OMITTED_END}\n"));
        }
        out.push_str(&String::from_utf8_lossy(tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_within_bounds() {
        let mut c = HeadTail::new(4, 4);
        for _ in 0..1000 {
            c.push(b"0123456789");
        }
        assert_eq!(c.total(), 10_000);
        assert!(c.tail.len() <= 8 + 10);
        assert_eq!(c.text(), "0123\n[… 9992 bytes omitted …]\n6789");
    }

    #[test]
    fn short_output_is_whole() {
        let mut c = HeadTail::new(4, 4);
        c.push(b"abcdef");
        assert_eq!(c.text(), "abcdef");
    }
}
