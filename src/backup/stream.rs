//! An archive read the way `verify` reads it: once, by three threads, hashed twice.
//!
//! Owns the reader thread (the file mapped a window at a time, handed on as slices of the
//! mapping), the decoder thread (decrypt, decompress), the chunks that go round, and
//! [`RawLane::hash_with`], which hashes the raw file beside an entry's content
//! ([`super::sha2x`]). Invariants: memory held or mapped does not grow with the archive; a
//! disk error or a file cut short is an I/O error, never a SIGBUS ([`super::mapfault`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;

use super::crypt::plaintext;
use super::fsutil::{IO_BUF, advise, hash_from, open_sequential};
use super::manifest::MANIFEST_NAME;
use super::mapfault;
use super::sha2x::{Lane, two_lanes_pay, update2};
use super::tarwalk::Walk;
use crate::util::hex;

/// The sending end of a pipe: filled buffers go one way, emptied ones come back.
struct Feed {
    tx: SyncSender<io::Result<Chunk>>,
    spare: Receiver<Chunk>,
}

/// A buffer and how many of its bytes are filled (buffers keep their full length, so one
/// that comes back is filled again without being zeroed first).
type Chunk = (Buf, usize);

/// Bytes of a chunk: a buffer filled by `read`, or a slice of the archive file mapped into
/// memory (see [`pump_mapped`]), which the kernel does not copy.
enum Buf {
    Owned(Vec<u8>),
    Mapped(Arc<Window>, usize),
}

impl Default for Buf {
    fn default() -> Self {
        Buf::Owned(Vec::new())
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped(w, at) => &w.bytes()[*at..],
        }
    }
}

/// A stretch of a file mapped read-only; unmapped when the last chunk of it is dropped.
struct Window {
    ptr: *mut libc::c_void,
    len: usize,
    /// Bytes of this file mapped at the moment, all windows together.
    mapped: Arc<AtomicUsize>,
    /// A page that could not be read raises the mapping's flag instead of a SIGBUS.
    guard: Option<mapfault::Guard>,
    _faulted: Arc<AtomicBool>,
}

// SAFETY: the mapping is read-only and owned by the window; any thread may read it.
unsafe impl Send for Window {}
unsafe impl Sync for Window {}

impl Window {
    fn map(file: &File, offset: u64, len: usize, map: &Mapping) -> io::Result<Window> {
        use std::os::fd::AsRawFd;
        let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: a fresh read-only private mapping of an open file; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        map.mapped.fetch_add(len, Ordering::Relaxed);
        let window = Window {
            ptr,
            len,
            mapped: map.mapped.clone(),
            guard: Some(mapfault::guard(ptr as *const u8, len, &map.faulted)),
            _faulted: map.faulted.clone(),
        };
        // SAFETY: advice on the mapping just made; failing only loses read-ahead.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        // Every page read in now, in this thread: a disk error or a file cut short is an
        // error here, naming the bytes. (Linux 5.14 and later; an older kernel says EINVAL
        // and the pages are read as they are touched.) A page lost after this (the file cut
        // short later, or dropped under memory pressure and then unreadable) is caught by
        // the guard.
        // SAFETY: as above, on the mapping just made.
        if unsafe { libc::madvise(ptr, len, MADV_POPULATE_READ) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                let what = if e.raw_os_error() == Some(libc::EFAULT) {
                    "the file is shorter than it was or cannot be read".to_string()
                } else {
                    e.to_string()
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!("bytes {offset}..{}: {what}", offset + len as u64),
                ));
            }
        }
        Ok(window)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // Unguarded first: the range is no longer this window's once unmapped.
        self.guard.take();
        // SAFETY: unmaps exactly the mapping made in `map`, once.
        unsafe { libc::munmap(self.ptr, self.len) };
        self.mapped.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// `madvise` advice (Linux 5.14): fault every page of the range in, or fail.
const MADV_POPULATE_READ: libc::c_int = 22;

/// The file is mapped this much at a time, and [`AHEAD`] windows are asked of the disk ahead
/// of the one being read.
const WINDOW: usize = 16 << 20;
const AHEAD: usize = 4;

/// How an archive is mapped: the window size, a gauge of the bytes mapped now, and whether
/// a page of it could not be read after it was mapped (see [`mapfault`]).
struct Mapping {
    window: usize,
    mapped: Arc<AtomicUsize>,
    faulted: Arc<AtomicBool>,
}

/// What a stream reports when a page of its mapped archive was lost under it: whatever was
/// read is not trusted.
fn unreadable() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the archive was cut short or could not be read while it was being read",
    )
}

/// Bytes handed over in chunks from another thread; an error there is the reader's error.
/// A chunk read to its end goes back; so does the last one when the reader is dropped.
pub struct Chunks {
    rx: Receiver<io::Result<Chunk>>,
    back: Sender<Chunk>,
    current: Chunk,
    at: usize,
}

impl io::BufRead for Chunks {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.current.1 {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    let done = std::mem::replace(&mut self.current, c);
                    if done.1 > 0 {
                        let _ = self.back.send(done);
                    }
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.current.0[self.at..self.current.1])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current.1);
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = io::BufRead::fill_buf(self)?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        let last = std::mem::take(&mut self.current);
        if last.1 > 0 {
            let _ = self.back.send(last);
        }
    }
}

/// Runs `produce` in a thread, which sends chunks; returns the reading end. Chunks the
/// reader is done with go to `back`; `produce` fills the ones that arrive on `spare`.
fn pipe<T: Send + 'static>(
    back: Sender<Chunk>,
    spare: Receiver<Chunk>,
    produce: impl FnOnce(&Feed) -> io::Result<T> + Send + 'static,
) -> (Chunks, JoinHandle<io::Result<T>>) {
    let (tx, rx) = sync_channel(8);
    let handle = std::thread::spawn(move || {
        let feed = Feed { tx, spare };
        match produce(&feed) {
            // The reader gets the error itself, whatever it wraps (a key error stays one);
            // the thread's own result is a copy of its kind and words.
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                let _ = feed.tx.send(Err(e));
                Err(copy)
            }
            done => done,
        }
    });
    let chunks = Chunks {
        rx,
        back,
        current: (Buf::default(), 0),
        at: 0,
    };
    (chunks, handle)
}

/// Reads `from` to its end in full chunks (the last one may be short), passing each to
/// `each` and sending it; stops quietly if the receiver went away. Returns whether it got to
/// the end.
fn pump(mut from: impl Read, feed: &Feed, mut each: impl FnMut(&[u8])) -> io::Result<bool> {
    loop {
        let mut chunk = match feed.spare.try_recv() {
            Ok((Buf::Owned(v), _)) => v,
            _ => vec![0u8; IO_BUF],
        };
        let mut n = 0;
        let mut failed: Option<io::Error> = None;
        let end = loop {
            match from.read(&mut chunk[n..]) {
                Ok(0) => break true,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // What was read before the error still goes on, so the reader gets every
                    // good entry and the error comes where it happened.
                    failed = Some(e);
                    break false;
                }
            }
            if n == chunk.len() {
                break false;
            }
        };
        each(&chunk[..n]);
        if n > 0 && feed.tx.send(Ok((Buf::Owned(chunk), n))).is_err() {
            return Ok(false);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if end {
            return Ok(true);
        }
    }
}

/// Like [`pump`] over a whole file, in chunks that are slices of the file mapped into memory:
/// the decoder and the hashes read the page cache itself, without the copy `read` makes
/// (about a quarter of a core at a gigabyte a second). The windows ahead are asked of the
/// disk while this one is read. A file that cannot be mapped (empty, or not a regular file) is
/// read instead. Bytes past the size seen at the start are left to the raw lane's end.
fn pump_mapped(file: File, feed: &Feed, map: &Mapping, mut each: impl FnMut(&[u8])) -> io::Result<bool> {
    let size = file.metadata().map(|m| if m.is_file() { m.len() } else { 0 })?;
    if size == 0 {
        return pump(file, feed, each);
    }
    let ask = |from: u64, len: u64| advise(&file, from, len, rustix::fs::Advice::WillNeed);
    let ahead = (AHEAD * map.window) as u64;
    ask(0, ahead);
    let mut offset = 0u64;
    while offset < size {
        let len = usize::try_from(size - offset).unwrap_or(usize::MAX).min(map.window);
        let window = Arc::new(Window::map(&file, offset, len, map)?);
        ask(offset + ahead, map.window as u64);
        offset += len as u64;
        let mut at = 0;
        while at < len {
            // Chunks coming back are dropped: a window is unmapped once all of it is back.
            while feed.spare.try_recv().is_ok() {}
            let n = IO_BUF.min(len - at);
            each(&window.bytes()[at..at + n]);
            if feed.tx.send(Ok((Buf::Mapped(window.clone(), at), n))).is_err() {
                return Ok(false);
            }
            at += n;
        }
    }
    Ok(true)
}

/// The archive file's own SHA-256, taken from the raw chunks the decoder is done with. On a
/// CPU where two lanes are no faster than one (no SHA extensions), the reader thread hashes
/// the file instead, in parallel, and this only hands the chunks back.
pub struct RawLane {
    path: PathBuf,
    paired: bool,
    used: Receiver<Chunk>,
    spare: Sender<Chunk>,
    pending: VecDeque<Chunk>,
    at: usize,
    lane: Lane,
    /// Raised when a page of the mapped file was lost under the reader ([`mapfault`]).
    faulted: Arc<AtomicBool>,
}

/// Raw chunks waiting for content to pair with before they are hashed on their own.
const MAX_PENDING: usize = 8;

impl RawLane {
    /// Hashes an entry's `data` into `content`, and as many waiting raw bytes beside it.
    pub fn hash_with(&mut self, content: &mut Lane, mut data: &[u8]) {
        self.poll();
        while self.paired && !data.is_empty() {
            let Some(front) = self.pending.front() else {
                break;
            };
            let raw = &front.0[self.at..front.1];
            let n = raw.len().min(data.len());
            update2(content, &data[..n], &mut self.lane, &raw[..n]);
            data = &data[n..];
            self.advance(n);
        }
        content.update(data);
        self.catch_up();
    }

    /// Hashes raw chunks on their own when too many wait (a stretch of the archive with
    /// little content: headers, empty files, entries not in the manifest). The reader only
    /// gets chunks back through here and [`RawLane::hash_with`], so whoever reads the stream
    /// calls one of them for every slice, skipped ones included ([`Walk::drain`]), or the
    /// chunks in flight grow with the bytes skipped.
    pub fn catch_up(&mut self) {
        self.poll();
        let keep = if self.paired { MAX_PENDING } else { 0 };
        while self.pending.len() > keep {
            self.hash_front();
        }
    }

    fn poll(&mut self) {
        loop {
            match self.used.try_recv() {
                Ok(c) => self.pending.push_back(c),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn hash_front(&mut self) {
        if let Some(front) = self.pending.front() {
            let n = front.1 - self.at;
            if self.paired {
                self.lane.update(&front.0[self.at..front.1]);
            }
            self.advance(n);
        }
    }

    fn advance(&mut self, n: usize) {
        self.at += n;
        if self.pending.front().is_some_and(|f| self.at == f.1) {
            if let Some(done) = self.pending.pop_front() {
                let _ = self.spare.send(done);
            }
            self.at = 0;
        }
    }

    /// Once the decoder has ended: hashes every chunk still to come (or takes the reader's
    /// hash), then whatever of the file was not passed on (bytes after the last frame, or
    /// after the decoder stopped), from the file itself.
    fn finish(mut self, reader: Option<Lane>) -> io::Result<(u64, String)> {
        while let Ok(c) = self.used.recv() {
            self.pending.push_back(c);
        }
        while !self.pending.is_empty() {
            self.hash_front();
        }
        let lane = hash_from(&self.path, reader.unwrap_or(self.lane))?;
        if self.faulted.load(Ordering::Acquire) {
            return Err(unreadable());
        }
        Ok((lane.len(), hex(&lane.finalize())))
    }
}

/// The largest `manifest.json` read (a manifest of millions of files stays far below).
const MAX_MANIFEST: u64 = 1 << 30;

/// The first entry: its name, and its content when it is `manifest.json` (empty otherwise,
/// for [`super::archive::parse_manifest`] to name what came first). `None` for an empty
/// archive. `tick` runs for each slice read (pass [`RawLane::catch_up`]).
pub fn first_entry<R: io::BufRead>(
    walk: &mut Walk<R>,
    tick: &mut dyn FnMut(),
) -> io::Result<Option<(String, Vec<u8>)>> {
    let Some(item) = walk.next_item()? else {
        return Ok(None);
    };
    let mut json = Vec::new();
    if item.name == MANIFEST_NAME && item.size <= MAX_MANIFEST {
        walk.data(item.size, |b| {
            json.extend_from_slice(b);
            tick();
            Ok(())
        })?;
    }
    Ok(Some((item.name, json)))
}

/// The next entry of an archive read through [`open_hashing`]. Whatever the last entry left
/// unread (an entry the caller skipped, a directory with data) is drained slice by slice
/// first, so its raw chunks go back to the reader and memory stays bounded. The raw lane
/// catches up once per entry as well: a long run of entries without data (empty files,
/// directories, links) has no slices, and its headers alone span many chunks.
pub fn next_entry(walk: &mut Walk<&mut Chunks>, raw: &mut RawLane) -> io::Result<Option<super::tarwalk::Item>> {
    walk.drain(|_| {
        raw.catch_up();
        Ok(())
    })?;
    raw.catch_up();
    walk.next_item()
}

/// The tar stream of an archive, with the file's own hash taken on the side.
pub struct HashingArchive {
    pub stream: Chunks,
    pub raw: RawLane,
    /// The reader's own hash of what it read, when it hashes (see [`RawLane`]).
    reader: JoinHandle<io::Result<Option<Lane>>>,
    decoder: JoinHandle<io::Result<()>>,
    /// Bytes of the file mapped at the moment (see [`pump_mapped`]); the tests watch it.
    #[cfg_attr(not(test), allow(dead_code))]
    mapped: Arc<AtomicUsize>,
}

pub fn open_hashing(path: &Path, identity: Option<&Path>) -> io::Result<HashingArchive> {
    // Measurement switch: the plain path (read, one lane at a time) beside the default.
    match std::env::var("RUNBOOK_VERIFY_PLAIN").as_deref() {
        Ok("read") => return open_with(path, identity, two_lanes_pay(), 0),
        Ok("lanes") => return open_with(path, identity, false, WINDOW),
        Ok(_) => return open_with(path, identity, false, 0),
        Err(_) => {}
    }
    open_with(path, identity, two_lanes_pay(), WINDOW)
}

fn open_with(path: &Path, identity: Option<&Path>, paired: bool, window: usize) -> io::Result<HashingArchive> {
    let file: File = open_sequential(path)?;
    let map = Mapping {
        window,
        mapped: Arc::new(AtomicUsize::new(0)),
        faulted: Arc::new(AtomicBool::new(false)),
    };
    let mapped = map.mapped.clone();
    let faulted = map.faulted.clone();
    // raw: reader → decoder → (used) caller → (spare) reader
    let (used_tx, used) = channel();
    let (raw_spare_tx, raw_spare) = channel();
    let (raw_chunks, reader) = pipe(used_tx, raw_spare, move |feed| {
        let mut lane = (!paired).then(Lane::new);
        let each = |c: &[u8]| {
            if let Some(l) = lane.as_mut() {
                l.update(c);
            }
        };
        if map.window == 0 {
            pump(file, feed, each)?;
        } else {
            pump_mapped(file, feed, &map, each)?;
        }
        Ok(lane)
    });
    // decoded: decoder → caller → (back) decoder
    let (back, spare) = channel();
    let (owned_path, identity) = (path.to_path_buf(), identity.map(Path::to_path_buf));
    let lost = faulted.clone();
    let (stream, decoder) = pipe(back, spare, move |feed| {
        let decoded = (|| {
            let plain = plaintext(raw_chunks, &owned_path, identity.as_deref())?;
            let mut dec = zstd::stream::read::Decoder::with_buffer(plain)?;
            if pump(&mut dec, feed, |_| {})? {
                // Whatever follows the zstd stream still goes past the raw lane.
                io::copy(&mut dec.finish(), &mut io::sink())?;
            }
            Ok(())
        })();
        // Zeros stood in for a page that was lost: what was decoded is not to be trusted,
        // and the error says why rather than what the zeros looked like to zstd.
        if lost.load(Ordering::Acquire) {
            return Err(unreadable());
        }
        decoded
    });
    let raw = RawLane {
        path: path.to_path_buf(),
        paired,
        used,
        spare: raw_spare_tx,
        pending: VecDeque::new(),
        at: 0,
        lane: Lane::new(),
        faulted,
    };
    Ok(HashingArchive {
        stream,
        raw,
        reader,
        decoder,
        mapped,
    })
}

/// Reads what the tar walk left (end blocks, the last frame and its checksum) and returns
/// (size, SHA-256) of the whole file.
pub fn finish_hashing(ar: HashingArchive) -> io::Result<(u64, String)> {
    let HashingArchive {
        mut stream,
        raw,
        reader,
        decoder,
        ..
    } = ar;
    // The rest of the stream, the raw chunks behind it handed back as it goes.
    let mut raw = raw;
    loop {
        let n = io::BufRead::fill_buf(&mut stream)?.len();
        if n == 0 {
            break;
        }
        io::BufRead::consume(&mut stream, n);
        raw.catch_up();
    }
    drop(stream);
    decoder
        .join()
        .map_err(|_| io::Error::other("the decompressing thread crashed"))??;
    let read = reader
        .join()
        .map_err(|_| io::Error::other("the reading thread crashed"))??;
    raw.finish(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::sha2x::tests::bytes;
    use sha2::{Digest, Sha256};

    /// A .tar.zst of many chunks: incompressible data (more raw bytes than content), zeros
    /// (far fewer), and thousands of empty files (headers only: raw with no content at all).
    fn archive(dir: &Path) -> (PathBuf, Vec<(String, Vec<u8>)>) {
        let mut files = vec![
            ("noise.bin".to_string(), bytes(5 << 20, 7)),
            ("zeros.bin".to_string(), vec![0u8; 9 << 20]),
        ];
        for i in 0..3000 {
            files.push((format!("empty/{i:04}"), Vec::new()));
        }
        files.push(("tail.bin".into(), bytes(3 << 20, 9)));
        let path = dir.join("a.tar.zst");
        let enc = zstd::stream::write::Encoder::new(File::create(&path).unwrap(), 3).unwrap();
        let mut tar = tar::Builder::new(enc);
        for (name, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        (path, files)
    }

    #[test]
    fn the_files_hash_and_every_entrys_hash_come_out_as_if_taken_apart() {
        // Paired (the SHA extensions), and hashed by the reader (any other CPU).
        for paired in [two_lanes_pay(), false] {
            walk_whole(paired);
        }
    }

    /// Windows smaller than a chunk in the tests (one chunk each, many windows), and larger.
    const SMALL_WINDOW: usize = 25 * 4096;

    fn walk_whole(paired: bool) {
        // 0: read(2) into buffers, the plain path the mapped one is measured against.
        for window in [0, SMALL_WINDOW, 3 << 20] {
            walk_whole_in(paired, window);
        }
    }

    fn walk_whole_in(paired: bool, window: usize) {
        let dir = tempfile::tempdir().unwrap();
        let (path, files) = archive(dir.path());
        let mut ar = open_with(&path, None, paired, window).unwrap();
        let mut walk = Walk::new(&mut ar.stream);
        let mut seen = Vec::new();
        loop {
            ar.raw.catch_up();
            let Some(item) = walk.next_item().unwrap() else { break };
            let mut lane = Lane::new();
            walk.data(item.size, |b| {
                ar.raw.hash_with(&mut lane, b);
                Ok(())
            })
            .unwrap();
            seen.push((item.name, hex(&lane.finalize())));
        }
        assert_eq!(seen.len(), files.len());
        for ((name, data), (got_name, got)) in files.iter().zip(&seen) {
            assert_eq!(name, got_name);
            assert_eq!(got, &hex(&Sha256::digest(data)), "{name}");
        }
        assert_whole_file(&path, ar);
    }

    /// What `finish_hashing` gives is the size and SHA-256 of the file at `path`.
    fn assert_whole_file(path: &Path, ar: HashingArchive) {
        let file = std::fs::read(path).unwrap();
        let (size, sha) = finish_hashing(ar).unwrap();
        assert_eq!((size, sha), (file.len() as u64, hex(&Sha256::digest(&file))));
    }

    #[test]
    fn skipped_entries_hand_their_raw_chunks_back_as_they_go() {
        for paired in [two_lanes_pay(), false] {
            let dir = tempfile::tempdir().unwrap();
            let (path, _) = archive(dir.path());
            let mut ar = open_with(&path, None, paired, SMALL_WINDOW).unwrap();
            let mut walk = Walk::new(&mut ar.stream);
            let mut most = 0;
            // Every entry skipped, none hashed: only the drain's ticks return the chunks.
            while walk.next_item().unwrap().is_some() {
                walk.drain(|_| {
                    ar.raw.catch_up();
                    most = most.max(ar.raw.pending.len());
                    Ok(())
                })
                .unwrap();
            }
            assert!(most <= MAX_PENDING, "{most} chunks held (paired: {paired})");
            assert_whole_file(&path, ar);
        }
    }

    /// A .tar.zst of 48 MiB that does not compress, far larger than what is in flight.
    fn big_archive(dir: &Path) -> PathBuf {
        let path = dir.join("big.tar.zst");
        let enc = zstd::stream::write::Encoder::new(File::create(&path).unwrap(), 1).unwrap();
        let mut tar = tar::Builder::new(enc);
        let noise = bytes(48 << 20, 3);
        let mut h = tar::Header::new_gnu();
        h.set_size(noise.len() as u64);
        tar.append_data(&mut h, "noise.bin", noise.as_slice()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn an_archive_cut_short_while_it_is_read_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_archive(dir.path());
        let mut ar = open_with(&path, None, two_lanes_pay(), SMALL_WINDOW).unwrap();
        // The reader is a few MiB ahead at most (chunks in flight), then the file is cut.
        let read = cut_and_walk(&path, &mut ar, 200, 24 << 20);
        let e = read.expect_err("a file cut short cannot be read to its end");
        assert!(e.to_string().contains("shorter than it was"), "{e}");
    }

    /// Waits `ms`, cuts the file at `path` to `len` bytes, then walks the first entry to its end.
    fn cut_and_walk(path: &Path, ar: &mut HashingArchive, ms: u64, len: u64) -> io::Result<u64> {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        File::options().write(true).open(path).unwrap().set_len(len).unwrap();
        let mut walk = Walk::new(&mut ar.stream);
        walk.next_item().and_then(|_| {
            walk.drain(|_| {
                ar.raw.catch_up();
                Ok(())
            })
        })
    }

    #[test]
    fn an_archive_cut_short_behind_the_reader_is_an_error_not_a_crash() {
        // The first 16 MiB window is mapped and read in before the file is cut inside it: its
        // pages are gone when the decoder gets to them (a SIGBUS without the guard).
        for paired in [two_lanes_pay(), false] {
            let dir = tempfile::tempdir().unwrap();
            let path = big_archive(dir.path());
            let mut ar = open_with(&path, None, paired, WINDOW).unwrap();
            let read = cut_and_walk(&path, &mut ar, 300, 2 << 20);
            let e = match read {
                Err(e) => e,
                Ok(_) => finish_hashing(ar).expect_err("a file cut short cannot be hashed whole"),
            };
            assert!(e.to_string().contains("cut short"), "{e}");
        }
    }

    #[test]
    fn a_big_archive_is_unmapped_behind_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_archive(dir.path());
        let mut ar = open_with(&path, None, two_lanes_pay(), SMALL_WINDOW).unwrap();
        let mapped = ar.mapped.clone();
        let mut most = 0;
        let mut walk = Walk::new(&mut ar.stream);
        while walk.next_item().unwrap().is_some() {
            walk.drain(|_| {
                ar.raw.catch_up();
                most = most.max(mapped.load(Ordering::Relaxed));
                Ok(())
            })
            .unwrap();
        }
        // What is mapped is what is in flight (decoded chunks ahead, raw ones waiting to be
        // hashed), never the whole file.
        assert!(most > 0);
        assert!(most <= 16 << 20, "{most} bytes mapped at once");
        assert_whole_file(&path, ar);
        assert_eq!(mapped.load(Ordering::Relaxed), 0, "all unmapped at the end");
    }

    #[test]
    fn a_long_run_of_empty_entries_is_unmapped_behind_the_reader() {
        // Entries without data have no slices to tick on: 100,000 empty files with names
        // that do not compress make a 5 MB archive of headers alone, walked as verify walks
        // it. What stays mapped is what is in flight (about 20 windows), not the archive.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.tar.zst");
        let enc = zstd::stream::write::Encoder::new(File::create(&path).unwrap(), 1).unwrap();
        let mut tar = tar::Builder::new(enc);
        let names = bytes(100_000 * 40, 11);
        for (i, n) in names.chunks(40).enumerate() {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_mtime(i as u64 * 7919);
            tar.append_data(&mut h, format!("d/{}", hex(n)), &[][..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let mut ar = open_with(&path, None, two_lanes_pay(), SMALL_WINDOW).unwrap();
        let mapped = ar.mapped.clone();
        let (mut most, mut entries) = (0, 0);
        let mut walk = Walk::new(&mut ar.stream);
        while let Some(item) = next_entry(&mut walk, &mut ar.raw).unwrap() {
            walk.data(item.size, |_| Ok(())).unwrap();
            most = most.max(mapped.load(Ordering::Relaxed));
            entries += 1;
        }
        assert_eq!(entries, 100_000);
        assert!(
            most <= 24 * SMALL_WINDOW && (most as u64) < size / 2,
            "{most} bytes of a {size}-byte archive mapped at once"
        );
        assert_whole_file(&path, ar);
    }

    #[test]
    fn an_error_after_good_entries_comes_after_them() {
        // A whole archive, then bytes that are not zstd: every entry is read in full, then
        // the error. (The decoder's last chunk holds all of this small archive.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.tar.zst");
        let files: Vec<(String, Vec<u8>)> = (0..3u32).map(|i| (format!("f{i}"), bytes(6000, i))).collect();
        let enc = zstd::stream::write::Encoder::new(File::create(&path).unwrap(), 1).unwrap();
        let mut tar = tar::Builder::new(enc);
        for (name, data) in &files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        let mut f = File::options().append(true).open(&path).unwrap();
        io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
        let mut ar = open_with(&path, None, two_lanes_pay(), SMALL_WINDOW).unwrap();
        let mut walk = Walk::new(&mut ar.stream);
        let mut seen = Vec::new();
        let e = loop {
            let item = match next_entry(&mut walk, &mut ar.raw) {
                Ok(Some(item)) => item,
                Ok(None) => break finish_hashing(ar).expect_err("bytes after the zstd stream that are not zstd"),
                Err(e) => break e,
            };
            let mut content = Vec::new();
            if let Err(e) = walk.data(item.size, |b| {
                content.extend_from_slice(b);
                Ok(())
            }) {
                break e;
            }
            seen.push((item.name, content));
        };
        assert_eq!(seen, files, "every entry before the bad bytes, whole: {e}");
    }

    #[test]
    fn a_walk_given_up_halfway_still_lets_the_whole_file_be_hashed() {
        for paired in [two_lanes_pay(), false] {
            walk_half(paired);
        }
    }

    fn walk_half(paired: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = archive(dir.path());
        let mut ar = open_with(&path, None, paired, SMALL_WINDOW).unwrap();
        let mut walk = Walk::new(&mut ar.stream);
        let first = walk.next_item().unwrap().unwrap();
        walk.data(first.size / 2, |b| {
            ar.raw.hash_with(&mut Lane::new(), b);
            Ok(())
        })
        .unwrap();
        assert_whole_file(&path, ar);
    }
}
