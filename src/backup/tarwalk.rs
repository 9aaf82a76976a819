//! A tar reader that hands out each entry's data where it already lies in the reader's
//! buffer, for `verify`: the bytes are hashed (or written to a scratch copy) straight from the
//! decompressor's output, with no copy into a buffer of the caller's. It reads what the
//! archive writer produces (GNU and ustar headers, GNU long names and link names) and PAX
//! `path` records; headers are checked against their checksum.

use std::io::{self, BufRead};

use super::manifest::EntryKind;

const BLOCK: u64 = 512;

/// One entry's header: its name (after any long-name record, without a trailing `/`) and
/// what it is.
pub struct Item {
    pub name: String,
    /// `None` for a type the archive writer never produces (a device, a FIFO, …).
    pub kind: Option<EntryKind>,
    pub size: u64,
}

pub struct Walk<R> {
    inner: R,
    /// Bytes of the current entry (data and padding) not consumed yet.
    left: u64,
}

impl<R: BufRead> Walk<R> {
    pub fn new(inner: R) -> Self {
        Walk { inner, left: 0 }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry's header, skipping whatever is left of the current one. `None` at the
    /// end-of-archive block (or at the end of the stream).
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        // Records that describe the next entry: a GNU long name, PAX `path` and `size`.
        let mut gnu_name: Option<Vec<u8>> = None;
        let mut pax: Pax = Pax::default();
        loop {
            self.skip_rest()?;
            let mut block = [0u8; BLOCK as usize];
            let pending = gnu_name.is_some() || pax != Pax::default();
            match read_full(&mut self.inner, &mut block)? {
                0 if !pending => return Ok(None),
                n if n < block.len() => return Err(io::Error::other("the tar stream ends inside a header")),
                _ => {}
            }
            if block.iter().all(|&b| b == 0) {
                if pending {
                    return Err(io::Error::other("the tar stream ends after a long-name or PAX record"));
                }
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            let recorded = header.cksum()?;
            let sum: u32 = block
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        u32::from(b' ')
                    } else {
                        u32::from(b)
                    }
                })
                .sum();
            if sum != recorded {
                return Err(io::Error::other(format!(
                    "a tar header's checksum is {recorded}, its bytes add up to {sum}"
                )));
            }
            let t = header.entry_type();
            let meta = t.is_gnu_longname() || t.is_pax_local_extensions() || t.is_gnu_longlink();
            // A PAX `size` stands for the header's (which says 0 past 8 GiB), as the tar
            // crate and GNU tar read it: verify and restore must see the same entries.
            let size = match pax.size {
                Some(s) if !meta => s,
                _ => header.entry_size()?,
            };
            self.left = size
                .checked_next_multiple_of(BLOCK)
                .ok_or_else(|| io::Error::other(format!("a tar header gives a size of {size} bytes")))?;
            if meta {
                let data = self.small_data(size)?;
                if t.is_gnu_longname() {
                    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                    gnu_name = Some(data[..end].to_vec());
                } else if t.is_pax_local_extensions() {
                    pax = Pax::parse(&data)?;
                }
                continue;
            }
            if t.is_pax_global_extensions() {
                continue;
            }
            let mut name = match gnu_name.as_ref().or(pax.path.as_ref()) {
                Some(n) => String::from_utf8_lossy(n).into_owned(),
                None => String::from_utf8_lossy(&header.path_bytes()).into_owned(),
            };
            // GNU tar names directories `dir/`; the manifest never ends a path with `/`.
            while name.len() > 1 && name.ends_with('/') {
                name.pop();
            }
            let kind = if t.is_file() || t.is_contiguous() {
                Some(EntryKind::File)
            } else if t.is_dir() {
                Some(EntryKind::Dir)
            } else if t.is_symlink() {
                Some(EntryKind::Symlink)
            } else {
                None
            };
            return Ok(Some(Item { name, kind, size }));
        }
    }

    /// Hands the current entry's data to `each`, slice by slice, as it lies in the buffer.
    /// Returns how many bytes there were (less than the header's size only when `each`
    /// fails or the stream ends early, which is an error).
    pub fn data(&mut self, size: u64, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        let mut remaining = size.min(self.left);
        let mut done = 0u64;
        while remaining > 0 {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ends {remaining} bytes before the entry does"),
                ));
            }
            let n = buf.len().min(usize::try_from(remaining).unwrap_or(usize::MAX));
            each(&buf[..n])?;
            self.inner.consume(n);
            remaining -= n as u64;
            self.left -= n as u64;
            done += n as u64;
        }
        Ok(done)
    }

    /// Hands what is left of the current entry (data and padding) to `each`: a skip that the
    /// caller sees, slice by slice.
    pub fn drain(&mut self, each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        self.data(u64::MAX, each)
    }

    /// A metadata entry's data (a long name, a PAX record), read whole.
    fn small_data(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > 1 << 20 {
            return Err(io::Error::other(format!("a {size}-byte long-name record")));
        }
        let mut out = Vec::with_capacity(size as usize);
        self.data(size, |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    fn skip_rest(&mut self) -> io::Result<()> {
        while self.left > 0 {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ends inside an entry",
                ));
            }
            let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
            self.inner.consume(n);
            self.left -= n as u64;
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(r: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        let n = avail.len().min(buf.len() - at);
        buf[at..at + n].copy_from_slice(&avail[..n]);
        r.consume(n);
        at += n;
    }
    Ok(at)
}

/// What a PAX extended header says of the next entry.
#[derive(Default, PartialEq)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

impl Pax {
    fn parse(data: &[u8]) -> io::Result<Pax> {
        let mut pax = Pax::default();
        for record in tar::PaxExtensions::new(data) {
            let record = record?;
            match record.key_bytes() {
                b"path" => pax.path = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let text = String::from_utf8_lossy(record.value_bytes());
                    pax.size = Some(
                        text.parse()
                            .map_err(|_| io::Error::other(format!("a PAX size of `{text}`")))?,
                    );
                }
                _ => {}
            }
        }
        Ok(pax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive as the tar crate writes it, read back the way `tar::Archive` reads it.
    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file.txt", "deep/".repeat(40));
        for (path, body) in [
            ("a.txt", &b"hello"[..]),
            (long.as_str(), &[7u8; 1500][..]),
            ("empty", &b""[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, body).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "dir/", io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "a.txt").unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn reads_what_the_tar_crate_reads() {
        let bytes = sample();
        let mut expected = Vec::new();
        let mut ar = tar::Archive::new(&bytes[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string();
            let mut body = Vec::new();
            io::Read::read_to_end(&mut e, &mut body).unwrap();
            expected.push((name, body));
        }
        // A small buffer, so entries straddle refills.
        let mut walk = Walk::new(io::BufReader::with_capacity(100, &bytes[..]));
        let mut got = Vec::new();
        while let Some(item) = walk.next_item().unwrap() {
            let mut body = Vec::new();
            let n = walk
                .data(item.size, |b| {
                    body.extend_from_slice(b);
                    Ok(())
                })
                .unwrap();
            assert_eq!(n, item.size);
            got.push((item.name, body));
        }
        assert_eq!(got, expected);
        assert!(got[1].0.len() > 100, "the long name came through: {}", got[1].0);
    }

    #[test]
    fn skips_data_left_unread_and_refuses_a_bad_header() {
        let bytes = sample();
        let mut walk = Walk::new(&bytes[..]);
        let names: Vec<String> = std::iter::from_fn(|| walk.next_item().unwrap().map(|i| i.name)).collect();
        assert_eq!(names.len(), 5);
        assert_eq!(names[0], "a.txt");

        let mut bad = bytes.clone();
        bad[0] ^= 1; // the first header's name
        let err = Walk::new(&bad[..]).next_item().err().expect("a checksum error");
        assert!(err.to_string().contains("checksum"), "{err}");

        // Any one byte changed (headers re-summed, so the damage gets past the checksum):
        // an error or a different walk, never a panic.
        for pos in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[pos] ^= flip;
                let start = pos / 512 * 512;
                if let Some(block) = bad.get_mut(start..start + 512) {
                    let mut h = tar::Header::new_old();
                    h.as_mut_bytes().copy_from_slice(block);
                    h.set_cksum();
                    block.copy_from_slice(h.as_bytes());
                }
                let mut walk = Walk::new(&bad[..]);
                while let Ok(Some(item)) = walk.next_item() {
                    if walk.data(item.size, |_| Ok(())).is_err() {
                        break;
                    }
                }
            }
        }

        let cut = &bytes[..512 + 3];
        let mut walk = Walk::new(cut);
        let item = walk.next_item().unwrap().unwrap();
        let err = walk.data(item.size, |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
