//! The few protobuf messages the rate limit call needs, encoded and decoded by hand (the
//! reading in [`crate::proto_wire`]). Messages, from
//! `envoy/service/ratelimit/v3/rls.proto` and `envoy/config/core/v3/grpc_service.proto`:
//! `RateLimitRequest { string domain = 1; repeated RateLimitDescriptor descriptors = 2;
//! uint32 hits_addend = 3; }`, `RateLimitDescriptor { repeated Entry entries = 1; }`,
//! `Entry { string key = 1; string value = 2; }`, `RateLimitResponse { Code overall_code = 1;
//! repeated DescriptorStatus statuses = 2; }`, `DescriptorStatus { Code code = 1;
//! google.protobuf.Duration duration_until_reset = 4; }`, `Duration { int64 seconds = 1;
//! int32 nanos = 2; }`, `GrpcService { EnvoyGrpc envoy_grpc = 1; }`,
//! `EnvoyGrpc { string cluster_name = 1; }`.

pub use crate::proto_wire::Malformed;
use crate::proto_wire::{fields, Wire as Value, LEN, VARINT};

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_wire(v: u64) -> Code {
        match v {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// One descriptor's answer: its code, and how long until its window resets (seconds and
/// nanoseconds, when the service says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorStatus {
    pub code: Code,
    pub until_reset: Option<(u64, u32)>,
}

/// The parts of a `RateLimitResponse` a decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub overall: Code,
    pub statuses: Vec<DescriptorStatus>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `RateLimitRequest` written as it is built: the domain, then one descriptor at a time (no
/// copy of the entries' values is kept), then one hit.
pub struct RequestEncoder {
    out: Vec<u8>,
    descriptor: Vec<u8>,
    entry: Vec<u8>,
}

impl RequestEncoder {
    pub fn new(domain: &str) -> RequestEncoder {
        let mut out = Vec::with_capacity(256);
        put_bytes(&mut out, 1, domain.as_bytes());
        RequestEncoder {
            out,
            descriptor: Vec::with_capacity(128),
            entry: Vec::with_capacity(64),
        }
    }

    /// Adds a descriptor: its entries, key and value, in order.
    pub fn descriptor(&mut self, entries: &[(&str, &str)]) {
        self.descriptor.clear();
        for (key, value) in entries {
            self.entry.clear();
            put_bytes(&mut self.entry, 1, key.as_bytes());
            put_bytes(&mut self.entry, 2, value.as_bytes());
            put_bytes(&mut self.descriptor, 1, &self.entry);
        }
        put_bytes(&mut self.out, 2, &self.descriptor);
    }

    /// The message, asking for one hit on every descriptor.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(3 << 3 | VARINT);
        put_varint(&mut self.out, 1);
        self.out
    }
}

/// A `RateLimitRequest` for `descriptors` (each a list of key/value entries), one hit each.
pub fn encode_request(domain: &str, descriptors: &[Vec<(&str, &str)>]) -> Vec<u8> {
    let mut request = RequestEncoder::new(domain);
    for entries in descriptors {
        request.descriptor(entries);
    }
    request.finish()
}

/// A serialized `GrpcService` naming `cluster` (Envoy's gRPC call takes this, or a bare cluster
/// name it falls back to only when the bytes do not parse as a `GrpcService`).
pub fn grpc_service(cluster: &str) -> Vec<u8> {
    let mut envoy_grpc = Vec::with_capacity(cluster.len() + 2);
    put_bytes(&mut envoy_grpc, 1, cluster.as_bytes());
    let mut out = Vec::with_capacity(envoy_grpc.len() + 2);
    put_bytes(&mut out, 1, &envoy_grpc);
    out
}

/// Decodes a `RateLimitResponse`, skipping the fields a decision does not read.
pub fn decode_response(bytes: &[u8]) -> Result<Response, Malformed> {
    let mut response = Response {
        overall: Code::Unknown,
        statuses: Vec::new(),
    };
    for field in fields(bytes) {
        match field? {
            (1, Value::Varint(v)) => response.overall = Code::from_wire(v),
            (2, Value::Bytes(b)) => response.statuses.push(decode_status(b)?),
            (1 | 2, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, Malformed> {
    let mut status = DescriptorStatus {
        code: Code::Unknown,
        until_reset: None,
    };
    for field in fields(bytes) {
        match field? {
            (1, Value::Varint(v)) => status.code = Code::from_wire(v),
            (4, Value::Bytes(b)) => status.until_reset = Some(decode_duration(b)?),
            (1 | 4, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok(status)
}

/// A `Duration`; a negative one reads as zero (a window cannot reset in the past).
fn decode_duration(bytes: &[u8]) -> Result<(u64, u32), Malformed> {
    let (mut seconds, mut nanos) = (0u64, 0u32);
    for field in fields(bytes) {
        match field? {
            // int64/int32 as varints: two's complement, so a negative value has the top bit set.
            (1, Value::Varint(v)) => seconds = if (v as i64) < 0 { 0 } else { v },
            (2, Value::Varint(v)) => {
                nanos = u32::try_from(v as i64).unwrap_or(0).min(999_999_999);
            }
            (1 | 2, _) => return Err(Malformed),
            _ => {}
        }
    }
    Ok((seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_encodes_as_protoc_would() {
        let bytes = encode_request("d", &[vec![("k", "v")]]);
        // domain "d"; descriptors { entries { key "k" value "v" } }; hits_addend 1
        assert_eq!(
            bytes,
            [0x0a, 1, b'd', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 1]
        );
    }

    /// Reads a message back into (field, bytes-or-varint) pairs, for checking what was encoded.
    fn read(bytes: &[u8]) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut out = Vec::new();
        for f in fields(bytes) {
            out.push(match f.unwrap() {
                (n, Value::Bytes(b)) => (n, Ok(b.to_vec())),
                (n, Value::Varint(v)) => (n, Err(v)),
                (n, _) => panic!("field {n}: fixed width"),
            });
        }
        out
    }

    #[test]
    fn long_fields_take_multi_byte_lengths() {
        let value = "x".repeat(300);
        let bytes = encode_request(
            "scopegate",
            &[
                vec![("gateway", "g"), ("subject", value.as_str())],
                vec![("server", "s")],
            ],
        );
        let top = read(&bytes);
        assert_eq!(top.len(), 4);
        assert_eq!(top[0], (1, Ok(b"scopegate".to_vec())));
        assert_eq!(top[3], (3, Err(1)), "hits_addend");
        let (2, Ok(first)) = &top[1] else { panic!() };
        let entries = read(first);
        assert_eq!(entries.len(), 2);
        let (1, Ok(subject)) = &entries[1] else {
            panic!()
        };
        assert_eq!(
            read(subject),
            vec![
                (1, Ok(b"subject".to_vec())),
                (2, Ok(value.clone().into_bytes()))
            ]
        );
        // The subject entry's length (7 + 2 + 300 + 3 = 312) needs two varint bytes.
        assert_eq!(subject.len(), 312);
        assert_eq!(
            top[2],
            (
                2,
                Ok(vec![
                    0x0a, 11, 0x0a, 6, b's', b'e', b'r', b'v', b'e', b'r', 0x12, 1, b's'
                ])
            )
        );
    }

    #[test]
    fn the_grpc_service_names_the_cluster() {
        assert_eq!(
            grpc_service("rl"),
            [0x0a, 4, 0x0a, 2, b'r', b'l'],
            "GrpcService {{ envoy_grpc {{ cluster_name: \"rl\" }} }}"
        );
    }

    /// `RateLimitResponse` bytes as a real service sends them, fields it adds included.
    fn response(overall: u8, statuses: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0x08, overall];
        for s in statuses {
            put_bytes(&mut out, 2, s);
        }
        // response_headers_to_add { key "x" value "y" }: skipped.
        put_bytes(&mut out, 3, &[0x0a, 1, b'x', 0x12, 1, b'y']);
        out
    }

    fn status(code: u8, reset: Option<(u64, u32)>) -> Vec<u8> {
        let mut out = vec![0x08, code];
        // current_limit { requests_per_unit 2 unit MINUTE }, limit_remaining 0: skipped.
        put_bytes(&mut out, 2, &[0x08, 2, 0x10, 2]);
        out.extend_from_slice(&[0x18, 0]);
        if let Some((s, n)) = reset {
            let mut d = vec![0x08];
            put_varint(&mut d, s);
            d.push(0x10);
            put_varint(&mut d, u64::from(n));
            put_bytes(&mut out, 4, &d);
        }
        out
    }

    #[test]
    fn responses_decode_with_their_reset_times() {
        let bytes = response(2, &[status(1, Some((10, 0))), status(2, Some((41, 5)))]);
        assert_eq!(
            decode_response(&bytes),
            Ok(Response {
                overall: Code::OverLimit,
                statuses: vec![
                    DescriptorStatus {
                        code: Code::Ok,
                        until_reset: Some((10, 0))
                    },
                    DescriptorStatus {
                        code: Code::OverLimit,
                        until_reset: Some((41, 5))
                    },
                ],
            })
        );
        assert_eq!(decode_response(&[0x08, 1]).map(|r| r.overall), Ok(Code::Ok));
        assert_eq!(
            decode_response(&[]).map(|r| r.overall),
            Ok(Code::Unknown),
            "an empty message is all defaults"
        );
    }

    #[test]
    fn a_negative_reset_reads_as_zero() {
        let mut d = vec![0x08];
        put_varint(&mut d, (-5i64) as u64);
        let mut s = vec![0x08, 2];
        put_bytes(&mut s, 4, &d);
        let r = decode_response(&response(2, &[s])).map(|r| r.statuses[0].until_reset);
        assert_eq!(r, Ok(Some((0, 0))));
    }

    #[test]
    fn malformed_bytes_are_refused_not_guessed() {
        let good = response(2, &[status(2, Some((3, 0)))]);
        for cut in 1..good.len() {
            // Every truncation that ends inside a field fails; those ending between fields of
            // the top message are shorter, well-formed messages.
            if let Ok(r) = decode_response(&good[..cut]) {
                assert!(r.statuses.len() <= 1);
            }
        }
        assert_eq!(decode_response(&[0x0a, 5, 1]), Err(Malformed));
        assert_eq!(decode_response(&[0x08]), Err(Malformed));
        assert_eq!(decode_response(&[0x0b]), Err(Malformed), "a group");
        assert_eq!(decode_response(&[0x0a, 0]), Err(Malformed), "code as bytes");
        let too_long = [0xff; 11];
        assert_eq!(decode_response(&too_long), Err(Malformed));
    }
}
