//! ES256 (ECDSA P-256, SHA-256) verification with a per-key table of multiples, built once at key load.
//!
//! The generic `ecdsa` verifier computes `u1·G + u2·Q` with a fresh wNAF table per call and 256
//! doublings. A verifying key is public and long-lived, so its multiples are tabulated once, as
//! are the generator's: both products are then sums of table entries (about 66 mixed additions
//! each, 4 doublings), which makes a verification about 2.6 times cheaper natively and under V8
//! (BENCHMARKS.md, "Cold ES256 verification"). Everything here handles public data, so the
//! lookups are variable-time on purpose.

use std::sync::OnceLock;

use p256::ecdsa::Signature;
use p256::elliptic_curve::group::{Curve as _, Group as _};
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

/// Windows of 8 bits covering a 256-bit scalar plus the carry of the signed recoding.
const WINDOWS: usize = 33;
/// Entries per window: `1·B … 8·B` for the window's base `B`; signed digits reach the rest.
const ENTRIES: usize = 8;

/// `table[i][j] = (j + 1) · 256^i · Q` in affine form (mixed additions are the cheapest).
/// About 19 KB per key (264 points).
pub struct KeyTable {
    table: Box<[[AffinePoint; ENTRIES]; WINDOWS]>,
}

impl KeyTable {
    /// Tabulates the multiples of `q`, a validated public key (not the identity).
    pub fn new(q: &AffinePoint) -> KeyTable {
        let mut projective = Vec::with_capacity(WINDOWS * ENTRIES);
        let mut base = ProjectivePoint::from(q);
        for _ in 0..WINDOWS {
            let mut multiple = base;
            for _ in 0..ENTRIES {
                projective.push(multiple);
                multiple += base;
            }
            for _ in 0..8 {
                base = base.double();
            }
        }
        let mut affine = vec![AffinePoint::IDENTITY; WINDOWS * ENTRIES];
        ProjectivePoint::batch_normalize(&projective, &mut affine);
        let mut table = Box::new([[AffinePoint::IDENTITY; ENTRIES]; WINDOWS]);
        for (row, chunk) in table.iter_mut().zip(affine.chunks_exact(ENTRIES)) {
            row.copy_from_slice(chunk);
        }
        KeyTable { table }
    }

    /// Bytes held by one table, for memory accounting.
    pub const SIZE: usize = WINDOWS * ENTRIES * std::mem::size_of::<AffinePoint>();

    /// `k·Q`, from the table: even digits go to one accumulator, odd ones (worth 16 times their
    /// window's base) to another that is multiplied by 16 at the end.
    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let digits = signed_radix16(k);
        let mut even = ProjectivePoint::IDENTITY;
        let mut odd = ProjectivePoint::IDENTITY;
        for (i, row) in self.table.iter().enumerate() {
            add_digit(&mut even, row, digits[2 * i]);
            if let Some(&d) = digits.get(2 * i + 1) {
                add_digit(&mut odd, row, d);
            }
        }
        for _ in 0..4 {
            odd = odd.double();
        }
        even + odd
    }
}

fn add_digit(acc: &mut ProjectivePoint, row: &[AffinePoint; ENTRIES], digit: i8) {
    let index = usize::from(digit.unsigned_abs());
    if let Some(entry) = index.checked_sub(1).and_then(|j| row.get(j)) {
        if digit > 0 {
            *acc += entry;
        } else {
            *acc -= entry;
        }
    }
}

/// Digits `d_0 … d_64` in `-8..=8` with `k = Σ d_i · 16^i`.
fn signed_radix16(k: &Scalar) -> [i8; 2 * WINDOWS - 1] {
    let bytes = k.to_bytes();
    let mut digits = [0i8; 2 * WINDOWS - 1];
    let mut carry = 0i8;
    for (i, byte) in bytes.iter().rev().enumerate() {
        for (n, nibble) in [byte & 0x0f, byte >> 4].into_iter().enumerate() {
            // nibble + carry is in 0..=16; recentre it into -8..=7 and carry the excess.
            let v = (nibble as i8) + carry;
            carry = (v + 8) >> 4;
            digits[2 * i + n] = v - (carry << 4);
        }
    }
    digits[2 * WINDOWS - 2] = carry;
    digits
}

/// The generator's table, built on first use (about 4 ms under V8) and kept for the VM's life.
/// p256 has a basepoint table of its own, but of projective points (full additions, more code);
/// this one shares [`KeyTable::mul`] with the keys.
fn generator_table() -> &'static KeyTable {
    static TABLE: OnceLock<KeyTable> = OnceLock::new();
    TABLE.get_or_init(|| KeyTable::new(&AffinePoint::GENERATOR))
}

/// Verifies an ECDSA P-256 signature (`r ‖ s`, 64 bytes) over a SHA-256 `digest`, as
/// `ecdsa::hazmat::verify_prehashed` does: `r` and `s` in `1..n` (high `s` accepted, as P-256's
/// `ecdsa` does), `R = (z/s)·G + (r/s)·Q` not the identity, and `x(R) mod n == r`.
pub fn verify_prehashed(table: &KeyTable, digest: &[u8; 32], signature: &[u8]) -> bool {
    let Ok(signature) = Signature::try_from(signature) else {
        return false;
    };
    let (r, s) = signature.split_scalars();
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest));
    let s_inv = match Option::<Scalar>::from(Invert::invert_vartime(&*s)) {
        Some(inv) => inv,
        None => return false,
    };
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let point = generator_table().mul(&u1) + table.mul(&u2);
    let x = point.to_affine().x();
    <Scalar as Reduce<FieldBytes>>::reduce(&x) == *r
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::ops::MulVartime;

    fn scalar(seed: u8) -> Scalar {
        let bytes: [u8; 32] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
        <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(bytes))
    }

    #[test]
    fn table_multiplication_matches_the_generic_one() {
        let q = (ProjectivePoint::GENERATOR * scalar(7)).to_affine();
        let table = KeyTable::new(&q);
        let cases = [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(8u64),
            Scalar::from(0x8888_8888_8888_8888u64),
            -Scalar::from(0x7777u64),
            scalar(1),
            scalar(200),
        ];
        for k in cases {
            let expected = ProjectivePoint::from(q).mul_vartime(&k);
            assert_eq!(table.mul(&k), expected);
        }
    }

    #[test]
    fn recoding_sums_back_to_the_scalar() {
        for k in [Scalar::ZERO, -Scalar::ONE, scalar(3), scalar(99)] {
            let digits = signed_radix16(&k);
            let sixteen = Scalar::from(16u64);
            let sum = digits.iter().rev().fold(Scalar::ZERO, |acc, &d| {
                let digit = Scalar::from(u64::from(d.unsigned_abs()));
                acc * sixteen + if d < 0 { -digit } else { digit }
            });
            assert_eq!(sum, k);
            assert!(digits.iter().all(|d| (-8..=8).contains(d)));
        }
    }
}
