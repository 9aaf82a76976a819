//! SHA-256 of two streams at once.
//!
//! Owns [`Lane`] and [`update2`], which interleaves two independent hashes in one thread with
//! the x86 SHA extensions, and is two plain hashes without them. Invariant: [`Lane`] gives the
//! same digests as `sha2::Sha256` for any split of the input.

/// One SHA-256 in progress.
#[derive(Clone)]
pub struct Lane {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    len: u64,
}

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl Default for Lane {
    fn default() -> Self {
        Lane {
            state: H0,
            block: [0; 64],
            filled: 0,
            len: 0,
        }
    }
}

impl Lane {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, data: &[u8]) {
        let data = self.top_up(data);
        if data.is_empty() {
            return;
        }
        let whole = data.len() / 64 * 64;
        compress(&mut self.state, &data[..whole]);
        self.len += whole as u64;
        self.keep(&data[whole..]);
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        // Up to the last 8 bytes of a block, then the length.
        let zeros = (119 - self.filled) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        self.update(&pad[..9 + zeros]);
        debug_assert_eq!(self.filled, 0);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Completes a partly filled block from `data`; returns what is left of `data`. When
    /// something is left, no block is partly filled.
    fn top_up<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        if self.filled == 0 {
            return data;
        }
        let take = (64 - self.filled).min(data.len());
        self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
        self.filled += take;
        self.len += take as u64;
        if self.filled == 64 {
            let block = self.block;
            compress(&mut self.state, &block);
            self.filled = 0;
        }
        &data[take..]
    }

    /// Keeps a tail shorter than a block (only called with no block partly filled).
    fn keep(&mut self, tail: &[u8]) {
        self.block[..tail.len()].copy_from_slice(tail);
        self.filled = tail.len();
        self.len += tail.len() as u64;
    }
}

/// Whether [`update2`] is faster than two [`Lane::update`]s on this CPU.
pub fn two_lanes_pay() -> bool {
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        return true;
    }
    false
}

/// Hashes `a` into `x` and `b` into `y`: the same as `x.update(a); y.update(b)`, with the
/// whole blocks the two have in common hashed side by side.
pub fn update2(x: &mut Lane, a: &[u8], y: &mut Lane, b: &[u8]) {
    let a = x.top_up(a);
    let b = y.top_up(b);
    let (a, b) = if x.filled == 0 && y.filled == 0 {
        let n = a.len().min(b.len()) / 64 * 64;
        compress2(&mut x.state, &a[..n], &mut y.state, &b[..n]);
        x.len += n as u64;
        y.len += n as u64;
        (&a[n..], &b[n..])
    } else {
        (a, b)
    };
    x.update(a);
    y.update(b);
}

/// `data` is whole blocks: one lane is the `sha2` crate's (with the SHA instructions where the
/// CPU has them; a hand-written single lane gained nothing over it, docs/benchmarks.md).
fn compress(state: &mut [u32; 8], data: &[u8]) {
    debug_assert_eq!(data.len() % 64, 0);
    portable(state, data);
}

/// Any CPU: the `sha2` crate's compression function, whole blocks at a time.
fn portable(state: &mut [u32; 8], data: &[u8]) {
    use sha2::digest::generic_array::{GenericArray, typenum::U64};
    // SAFETY: `GenericArray<u8, U64>` is `repr(transparent)` over `[u8; 64]` (alignment 1),
    // and `data` holds exactly `data.len() / 64` such blocks.
    let blocks = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<GenericArray<u8, U64>>(), data.len() / 64) };
    sha2::compress256(state, blocks);
}

/// `a` and `b` are whole blocks, as many of one as of the other.
fn compress2(x: &mut [u32; 8], a: &[u8], y: &mut [u32; 8], b: &[u8]) {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        // SAFETY: as above.
        unsafe { shani::two(x, a, y, b) };
        return;
    }
    compress(x, a);
    compress(y, b);
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    pub fn available() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// A hash's working registers: the state as the SHA instructions want it (ABEF, CDGH),
    /// the state before the block, and the message schedule's last four words of four.
    struct Regs {
        abef: __m128i,
        cdgh: __m128i,
        saved: (__m128i, __m128i),
        w: [__m128i; 4],
    }

    #[inline(always)]
    unsafe fn load(state: &[u32; 8]) -> Regs {
        // SAFETY (all loads and stores here): unaligned 16-byte accesses inside the arrays.
        unsafe {
            let p = state.as_ptr() as *const __m128i;
            let dcba = _mm_loadu_si128(p);
            let efgh = _mm_loadu_si128(p.add(1));
            let cdab = _mm_shuffle_epi32(dcba, 0xB1);
            let efgh = _mm_shuffle_epi32(efgh, 0x1B);
            let zero = _mm_setzero_si128();
            Regs {
                abef: _mm_alignr_epi8(cdab, efgh, 8),
                cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
                saved: (zero, zero),
                w: [zero; 4],
            }
        }
    }

    #[inline(always)]
    unsafe fn store(r: &Regs, state: &mut [u32; 8]) {
        // SAFETY: two unaligned 16-byte stores inside the 32-byte state.
        unsafe {
            let feba = _mm_shuffle_epi32(r.abef, 0x1B);
            let dchg = _mm_shuffle_epi32(r.cdgh, 0xB1);
            let p = state.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
            _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
        }
    }

    /// Starts a block: saves the state, loads the 16 message words big-endian.
    #[inline(always)]
    unsafe fn begin(r: &mut Regs, block: *const u8) {
        // SAFETY: the caller passes the start of a whole 64-byte block: four 16-byte loads.
        unsafe {
            let mask = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0Bu64 as i64, 0x0405_0607_0001_0203u64 as i64);
            r.saved = (r.abef, r.cdgh);
            let p = block as *const __m128i;
            for i in 0..4 {
                r.w[i] = _mm_shuffle_epi8(_mm_loadu_si128(p.add(i)), mask);
            }
        }
    }

    /// Rounds 4i..4i+4; from i = 4 on, the next four schedule words are computed first.
    #[inline(always)]
    unsafe fn rounds4(r: &mut Regs, i: usize) {
        // SAFETY: register arithmetic, and a 16-byte load of K[4i..4i+4] with i < 16.
        unsafe {
            let w = if i < 4 {
                r.w[i]
            } else {
                let [w0, w1, w2, w3] = r.w;
                let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
                let w4 = _mm_sha256msg2_epu32(t, w3);
                r.w = [w1, w2, w3, w4];
                w4
            };
            let k = _mm_loadu_si128(K.as_ptr().add(4 * i) as *const __m128i);
            let t = _mm_add_epi32(w, k);
            r.cdgh = _mm_sha256rnds2_epu32(r.cdgh, r.abef, t);
            r.abef = _mm_sha256rnds2_epu32(r.abef, r.cdgh, _mm_shuffle_epi32(t, 0x0E));
        }
    }

    #[inline(always)]
    unsafe fn end(r: &mut Regs) {
        // SAFETY: register arithmetic only.
        unsafe {
            r.abef = _mm_add_epi32(r.abef, r.saved.0);
            r.cdgh = _mm_add_epi32(r.cdgh, r.saved.1);
        }
    }

    /// Two hashes, a block of each in turn, their instructions interleaved.
    ///
    /// # Safety
    /// The CPU has the SHA extensions and SSE4.1; `a` and `b` are whole blocks, as many of one
    /// as of the other.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn two(x: &mut [u32; 8], a: &[u8], y: &mut [u32; 8], b: &[u8]) {
        // SAFETY: the caller's contract (the CPU features); the blocks are whole chunks of `a`
        // and `b`, as many of each.
        unsafe {
            let (mut r, mut s) = (load(x), load(y));
            for (ba, bb) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
                begin(&mut r, ba.as_ptr());
                begin(&mut s, bb.as_ptr());
                for i in 0..16 {
                    rounds4(&mut r, i);
                    rounds4(&mut s, i);
                }
                end(&mut r);
                end(&mut s);
            }
            store(&r, x);
            store(&s, y);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    /// Bytes that are not all alike, so a misplaced block changes the digest.
    pub(crate) fn bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn one_lane_matches_sha2_at_every_length_around_the_padding() {
        for n in 0..300 {
            let data = bytes(n, n as u32);
            let mut lane = Lane::new();
            lane.update(&data);
            assert_eq!(lane.finalize(), reference(&data), "length {n}");
        }
        let mut lane = Lane::new();
        lane.update(b"abc");
        assert_eq!(
            crate::util::hex(&lane.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn two_lanes_match_two_hashes_whatever_the_split() {
        let a = bytes(70_001, 1);
        let b = bytes(50_123, 2);
        // Pieces of many sizes, in step and out of step with the block size.
        for (step_a, step_b) in [
            (1, 1),
            (63, 65),
            (64, 64),
            (100, 7),
            (4096, 4000),
            (65_536, 1000),
            (70_001, 50_123),
        ] {
            let (mut x, mut y) = (Lane::new(), Lane::new());
            let (mut ia, mut ib) = (0, 0);
            while ia < a.len() || ib < b.len() {
                let ea = (ia + step_a).min(a.len());
                let eb = (ib + step_b).min(b.len());
                update2(&mut x, &a[ia..ea], &mut y, &b[ib..eb]);
                (ia, ib) = (ea, eb);
            }
            assert_eq!(x.len(), a.len() as u64);
            assert_eq!(x.finalize(), reference(&a), "a in pieces of {step_a}");
            assert_eq!(y.finalize(), reference(&b), "b in pieces of {step_b}");
        }
    }

    #[test]
    fn the_portable_path_and_the_sha_extensions_agree() {
        let data = bytes(64 * 300, 5);
        let (mut portable_state, mut state) = (H0, H0);
        portable(&mut portable_state, &data);
        compress(&mut state, &data);
        assert_eq!(portable_state, state);
        let (mut x, mut y) = (H0, H0);
        compress2(&mut x, &data[..64 * 150], &mut y, &data[64 * 150..]);
        let (mut px, mut py) = (H0, H0);
        portable(&mut px, &data[..64 * 150]);
        portable(&mut py, &data[64 * 150..]);
        assert_eq!((x, y), (px, py));
    }

    #[test]
    fn one_changed_byte_in_either_lane_changes_only_that_lanes_digest() {
        let a = bytes(10_000, 3);
        let b = bytes(10_000, 4);
        let mut damaged = b.clone();
        damaged[5_000] ^= 1;
        let (mut x, mut y) = (Lane::new(), Lane::new());
        update2(&mut x, &a, &mut y, &damaged);
        assert_eq!(x.finalize(), reference(&a));
        let got = y.finalize();
        assert_eq!(got, reference(&damaged));
        assert_ne!(got, reference(&b));
    }
}
