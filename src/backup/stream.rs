//! An archive read the way `verify` reads it: once, by three threads, hashed twice.
//!
//! A reader thread reads the file in 1 MiB chunks. A decoder thread decrypts them (for a
//! `.tar.zst.age`) and decompresses them. The caller's thread walks the tar stream and
//! hashes each entry's content. The whole file's SHA-256, which the sidecar records, is
//! taken in the caller's thread too: the decoder hands each raw chunk on once it is done
//! with it, and [`RawLane::hash_with`] hashes those raw bytes side by side with an entry's
//! content, two SHA-256 lanes in one core ([`super::sha2x`]). Filled chunks go one way and
//! emptied ones come back to be filled again, so nothing is allocated per chunk and at most
//! a few dozen MiB are held, whatever the archive's size.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;

use super::archive::{IO_BUF, hash_from, open_sequential, plaintext};
use super::manifest::MANIFEST_NAME;
use super::sha2x::{Lane, two_lanes_pay, update2};
use super::tarwalk::Walk;
use crate::audit::hex;

/// The sending end of a pipe: filled buffers go one way, emptied ones come back.
struct Feed {
    tx: SyncSender<io::Result<Chunk>>,
    spare: Receiver<Chunk>,
}

/// A buffer and how many of its bytes are filled (buffers keep their full length, so one
/// that comes back is filled again without being zeroed first).
type Chunk = (Vec<u8>, usize);

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
        let r = produce(&feed);
        if let Err(e) = &r {
            let _ = feed.tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        r
    });
    let chunks = Chunks {
        rx,
        back,
        current: (Vec::new(), 0),
        at: 0,
    };
    (chunks, handle)
}

/// Reads `from` to its end in full chunks (the last one may be short), passing each to
/// `each` and sending it; stops quietly if the receiver went away. Returns whether it got to
/// the end.
fn pump(mut from: impl Read, feed: &Feed, mut each: impl FnMut(&[u8])) -> io::Result<bool> {
    loop {
        let (mut chunk, _) = feed.spare.try_recv().unwrap_or_else(|_| (vec![0u8; IO_BUF], 0));
        let mut n = 0;
        let end = loop {
            match from.read(&mut chunk[n..]) {
                Ok(0) => break true,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if n == chunk.len() {
                break false;
            }
        };
        each(&chunk[..n]);
        if n > 0 && feed.tx.send(Ok((chunk, n))).is_err() {
            return Ok(false);
        }
        if end {
            return Ok(true);
        }
    }
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

/// The tar stream of an archive, with the file's own hash taken on the side.
pub struct HashingArchive {
    pub stream: Chunks,
    pub raw: RawLane,
    /// The reader's own hash of what it read, when it hashes (see [`RawLane`]).
    reader: JoinHandle<io::Result<Option<Lane>>>,
    decoder: JoinHandle<io::Result<()>>,
}

pub fn open_hashing(path: &Path, identity: Option<&Path>) -> io::Result<HashingArchive> {
    open_with(path, identity, two_lanes_pay())
}

fn open_with(path: &Path, identity: Option<&Path>, paired: bool) -> io::Result<HashingArchive> {
    let file: File = open_sequential(path)?;
    // raw: reader → decoder → (used) caller → (spare) reader
    let (used_tx, used) = channel();
    let (raw_spare_tx, raw_spare) = channel();
    let (raw_chunks, reader) = pipe(used_tx, raw_spare, move |feed| {
        let mut lane = (!paired).then(Lane::new);
        pump(file, feed, |c| {
            if let Some(l) = lane.as_mut() {
                l.update(c);
            }
        })?;
        Ok(lane)
    });
    // decoded: decoder → caller → (back) decoder
    let (back, spare) = channel();
    let (owned_path, identity) = (path.to_path_buf(), identity.map(Path::to_path_buf));
    let (stream, decoder) = pipe(back, spare, move |feed| {
        let plain = plaintext(raw_chunks, &owned_path, identity.as_deref())?;
        let mut dec = zstd::stream::read::Decoder::with_buffer(plain)?;
        if pump(&mut dec, feed, |_| {})? {
            // Whatever follows the zstd stream still goes past the raw lane.
            io::copy(&mut dec.finish(), &mut io::sink())?;
        }
        Ok(())
    });
    let raw = RawLane {
        path: path.to_path_buf(),
        paired,
        used,
        spare: raw_spare_tx,
        pending: VecDeque::new(),
        at: 0,
        lane: Lane::new(),
    };
    Ok(HashingArchive {
        stream,
        raw,
        reader,
        decoder,
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

    fn walk_whole(paired: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (path, files) = archive(dir.path());
        let mut ar = open_with(&path, None, paired).unwrap();
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
            let mut ar = open_with(&path, None, paired).unwrap();
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

    #[test]
    fn a_walk_given_up_halfway_still_lets_the_whole_file_be_hashed() {
        for paired in [two_lanes_pay(), false] {
            walk_half(paired);
        }
    }

    fn walk_half(paired: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = archive(dir.path());
        let mut ar = open_with(&path, None, paired).unwrap();
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
