//! Test-only: the seeded generator and byte mutations the differential tests (the JSON-RPC
//! reader's, the listing walk's, the token claims reader's) share, so all fuzz their input the
//! same way.
#![cfg(test)] // declared in lib.rs as `#[cfg(test)] mod …`: test code only
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

/// xorshift64*: reproducible from its seed, which a failing case's report names.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(crate) fn pick<'s, T>(&mut self, of: &'s [T]) -> &'s T {
        &of[self.below(of.len())]
    }
}

/// One mutation at a random place: a deletion, one of `pieces` spliced in, a slice of the body
/// repeated (repeated keys, entries, events), or one byte replaced by a JSON token byte.
pub(crate) fn mutate(rng: &mut Rng, body: &mut Vec<u8>, pieces: &[&[u8]]) {
    let at = rng.below(body.len() + 1);
    match rng.below(5) {
        0 => {
            let end = (at + 1 + rng.below(8)).min(body.len());
            body.drain(at.min(end)..end);
        }
        1 | 2 => {
            let piece = pieces[rng.below(pieces.len())];
            body.splice(at..at, piece.iter().copied());
        }
        3 => {
            let start = rng.below(body.len());
            let end = (start + 1 + rng.below(40)).min(body.len());
            let slice = body[start..end].to_vec();
            body.splice(at..at, slice);
        }
        _ => {
            if let Some(b) = body.get_mut(at) {
                *b = b" {}[]\",:0a\\"[rng.below(11)];
            }
        }
    }
}
