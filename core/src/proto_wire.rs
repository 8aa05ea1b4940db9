//! The protobuf wire format read by hand, field by field, for the few messages scopegate
//! decodes (a protobuf runtime would cost the `.wasm` more than all of them together).
//!
//! Wire format: <https://protobuf.dev/programming-guides/encoding/>. Every read is bounded by
//! the bytes it is given: a truncated varint or length, or a group, is [`Malformed`].

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// Bytes that are not a well-formed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    /// `double`, `fixed64`, `sfixed64`: the eight bytes, little-endian.
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

/// Reads a message's fields one by one: `(field number, value)`.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

pub(crate) fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.rest.split_first().ok_or(Malformed)?;
            self.rest = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Wire<'a>), Malformed> {
        let tag = self.varint()?;
        let value = match (tag & 7) as u8 {
            VARINT => Wire::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8)?;
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                Wire::Fixed64(u64::from_le_bytes(le))
            }
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Wire::Bytes(self.take(n)?)
            }
            FIXED32 => self.take(4).map(|_| Wire::Fixed32)?,
            // Groups (3, 4) are long deprecated; nothing scopegate reads uses them.
            _ => return Err(Malformed),
        };
        Ok((tag >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            // Nothing after a malformed field can be trusted: stop there.
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Result<(u64, Wire<'_>), Malformed>> {
        fields(bytes).collect()
    }

    #[test]
    fn reads_each_wire_type() {
        let bytes = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 0, 0, 0, 0, 0, 0, 0x24, 0x40, // 2: fixed64 (10.0 as a double)
            0x1a, 2, b'h', b'i', // 3: bytes
            0x25, 1, 2, 3, 4, // 4: fixed32
        ];
        assert_eq!(
            all(&bytes),
            vec![
                Ok((1, Wire::Varint(150))),
                Ok((2, Wire::Fixed64(10f64.to_bits()))),
                Ok((3, Wire::Bytes(b"hi"))),
                Ok((4, Wire::Fixed32)),
            ]
        );
    }

    #[test]
    fn truncated_or_unknown_input_is_malformed_and_ends_the_read() {
        for bad in [
            &[0x08][..],      // a tag without its varint
            &[0x08, 0x80],    // a varint cut short
            &[0x0a, 5, b'a'], // a length past the end
            &[0x11, 0, 0],    // a fixed64 cut short
            &[0x0b],          // a group
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ], // an 11-byte varint
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // a huge length
        ] {
            assert_eq!(all(bad), vec![Err(Malformed)], "{bad:02x?}");
        }
    }
}
