//! Test-only: the named mutations of a generated JWK the JWK importer's differential test runs.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use serde_json::{json, Map, Value};

use super::{b64, unb64};

/// Base64url variants of one member's value: padded, standard alphabet, non-canonical last
/// character, whitespace, a character more or less.
fn encodings(text: &str) -> Vec<String> {
    let mut out = vec![
        format!("{text}="),
        format!("{text}=="),
        text.replace('-', "+").replace('_', "/"),
        format!("+{}", &text[1..]),
        format!("/{}", &text[1..]),
        format!(" {text}"),
        format!("{text}\n"),
        format!("{text}A"),
        format!("A{text}"),
        text[..text.len() - 1].to_owned(),
        text.to_lowercase(),
        String::new(),
    ];
    // Same decoded bytes, other unused low bits: the next character in the alphabet.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = text.chars().last().unwrap();
    let at = alphabet.find(last).unwrap();
    let next = alphabet.as_bytes()[(at + 1) % 64] as char;
    out.push(format!("{}{next}", &text[..text.len() - 1]));
    out
}

/// Replacement values of the wrong type for a member.
fn retyped(value: &Value) -> Vec<Value> {
    vec![
        Value::Null,
        json!(1),
        json!(true),
        json!([value]),
        json!({ "v": value }),
        json!(value.to_string()),
    ]
}

/// An odd modulus of `bits` bits with the top bit set.
fn modulus(bits: usize) -> Vec<u8> {
    let mut n = vec![0x5au8; bits.div_ceil(8)];
    n[0] = 1 << ((bits - 1) % 8);
    n[0] |= n[0] >> 1;
    let last = n.len() - 1;
    n[last] |= 1;
    n
}

/// Every named mutation of one base JWK.
pub(super) fn mutations(base: &Map<String, Value>) -> Vec<(String, Map<String, Value>)> {
    let mut out = Vec::new();
    let mut with = |case: String, f: &dyn Fn(&mut Map<String, Value>)| {
        let mut m = base.clone();
        f(&mut m);
        out.push((case, m));
    };
    let names: Vec<String> = base.keys().cloned().collect();
    let kty = base["kty"].as_str().unwrap().to_owned();
    for name in &names {
        with(format!("without {name}"), &|m| {
            m.remove(name);
        });
        for (i, v) in retyped(&base[name]).into_iter().enumerate() {
            with(format!("{name} retyped ({i})"), &|m| {
                m.insert(name.clone(), v.clone());
            });
        }
    }
    let members = [
        "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "oth", "k", "pub", "priv",
    ];
    for name in members {
        with(format!("with {name}"), &|m| {
            m.entry(name).or_insert(json!(b64(&[7; 32])));
        });
    }
    for (name, value) in [
        ("kid", json!("key-1")),
        ("kid", json!("")),
        ("kid", json!("k\u{e9}y \"1\"")),
        ("kid", json!(1)),
        ("kid", Value::Null),
        ("x5c", json!(["MIIB"])),
        ("x5t", json!(null)),
        ("ext", json!(true)),
        ("nested", json!({"a": [1, {"b": null}], "c": 1.5})),
        ("KTY", json!("oct")),
        ("Use", json!("enc")),
    ] {
        with(format!("with {name}: {value}"), &|m| {
            m.insert(name.to_owned(), value.clone());
        });
    }
    let values: [(&str, Vec<Value>); 5] = [
        (
            "use",
            vec![
                json!("sig"),
                json!("enc"),
                json!("SIG"),
                json!(""),
                json!("sig "),
            ],
        ),
        (
            "key_ops",
            vec![
                json!([]),
                json!(["verify"]),
                json!(["verify", "verify"]),
                json!(["sign"]),
                json!(["verify", "sign"]),
                json!(["sign", "verify"]),
                json!(["encrypt"]),
                json!(["Verify"]),
                json!("verify"),
                json!([1]),
                json!([null]),
            ],
        ),
        (
            "alg",
            [
                "RS256", "PS256", "ES256", "EdDSA", "Ed25519", "RS384", "PS512", "ES384",
            ]
            .into_iter()
            .chain(["ES256K", "HS256", "none", "", "rs256", "EDDSA", "Ed448"])
            .map(Value::from)
            .collect(),
        ),
        (
            "kty",
            ["RSA", "EC", "OKP", "oct", "AKP", "rsa", "ec", ""]
                .map(Value::from)
                .to_vec(),
        ),
        (
            "crv",
            [
                "P-256",
                "P-384",
                "P-521",
                "Ed25519",
                "Ed448",
                "X25519",
                "secp256k1",
                "p-256",
            ]
            .map(Value::from)
            .to_vec(),
        ),
    ];
    for (name, vs) in values {
        for v in vs {
            with(format!("{name}: {v}"), &|m| {
                m.insert(name.to_owned(), v.clone());
            });
        }
    }
    for name in ["n", "e", "x", "y"] {
        if let Some(text) = base.get(name).and_then(Value::as_str) {
            for (i, variant) in encodings(text).into_iter().enumerate() {
                with(format!("{name} encoded ({i}): {variant:?}"), &|m| {
                    m.insert(name.to_owned(), json!(variant));
                });
            }
        }
    }
    // Private members, as a private JWK would have them.
    let private: &[&str] = if kty == "RSA" {
        &["d", "p", "q", "dp", "dq", "qi"]
    } else {
        &["d"]
    };
    with("private members".into(), &|m| {
        for name in private {
            m.insert((*name).to_owned(), json!(b64(&[9; 32])));
        }
    });
    // jwt-simple's 8192-byte bound on the entry's compact text, just under, at and over it.
    let len = serde_json::to_string(base).unwrap().len();
    for target in [8191, 8192, 8193, 9000] {
        with(format!("{target} bytes long"), &|m| {
            let filler = target - len - r#","x5u":"""#.len();
            m.insert("x5u".to_owned(), json!("a".repeat(filler)));
        });
    }
    match kty.as_str() {
        "RSA" => rsa_mutations(base, &mut with),
        "EC" => ec_mutations(base, &mut with),
        _ => ed_mutations(base, &mut with),
    }
    out
}

type With<'a> = dyn FnMut(String, &dyn Fn(&mut Map<String, Value>)) + 'a;

fn rsa_mutations(base: &Map<String, Value>, with: &mut With) {
    let n = unb64(base["n"].as_str().unwrap());
    let mut low = n.clone();
    low[0] &= 0x7f;
    let mut even = n.clone();
    let last = even.len() - 1;
    even[last] &= 0xfe;
    let mut moduli = vec![
        ("sign byte", [&[0][..], &n].concat()),
        ("two zero bytes", [&[0, 0][..], &n].concat()),
        (
            "zero byte before a clear top bit",
            [&[0][..], &low].concat(),
        ),
        ("top bit clear", low),
        ("even", even),
        ("empty", Vec::new()),
        ("zero", vec![0]),
        ("one", vec![1]),
    ];
    for bits in [1024, 2040, 2047, 2048, 3072, 4095, 4096, 4097, 4104, 4112] {
        moduli.push(("synthetic", modulus(bits)));
        moduli.push(("synthetic, sign byte", [&[0][..], &modulus(bits)].concat()));
    }
    for (case, n) in moduli {
        let bits = n.len() * 8;
        with(format!("n {case} ({bits} bits with zeros)"), &|m| {
            m.insert("n".into(), json!(b64(&n)));
        });
    }
    for e in [
        "AQAB", "AAEAAQ", "AQAB=", "Aw", "AQAC", "AQABAA", "AAAAAQAB", "AQAA", "", "AQ", "_w",
    ] {
        with(format!("e {e:?}"), &|m| {
            m.insert("e".into(), json!(e));
        });
    }
}

fn ec_mutations(base: &Map<String, Value>, with: &mut With) {
    let x = unb64(base["x"].as_str().unwrap());
    let y = unb64(base["y"].as_str().unwrap());
    // p = 2^256 - 2^224 + 2^192 + 2^96 - 1, big-endian.
    let p: Vec<u8> = [
        [0xff; 4],
        [0, 0, 0, 1],
        [0; 4],
        [0; 4],
        [0; 4],
        [0xff; 4],
        [0xff; 4],
        [0xff; 4],
    ]
    .concat();
    let sub = |a: &[u8], b: &[u8]| -> Vec<u8> {
        let mut out = vec![0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = a[i] as i16 - b[i] as i16 - borrow;
            out[i] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        out
    };
    let mut y_plus = y.clone();
    y_plus[31] ^= 1;
    let points: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("off the curve", x.clone(), y_plus),
        (
            "negated (on the curve, another key)",
            x.clone(),
            sub(&p, &y),
        ),
        (
            "zero (no encoding of the identity)",
            vec![0; 32],
            vec![0; 32],
        ),
        ("x = p", p.clone(), y.clone()),
        ("y = p", x.clone(), p.clone()),
        ("y above p", x.clone(), vec![0xff; 32]),
        ("x short", x[1..].to_vec(), y.clone()),
        ("y long", x.clone(), [&[0][..], &y].concat()),
        ("x, y swapped", y.clone(), x.clone()),
    ];
    for (case, px, py) in points {
        with(format!("point {case}"), &|m| {
            m.insert("x".into(), json!(b64(&px)));
            m.insert("y".into(), json!(b64(&py)));
        });
    }
}

fn ed_mutations(base: &Map<String, Value>, with: &mut With) {
    let x = unb64(base["x"].as_str().unwrap());
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let mut non_canonical = vec![0xffu8; 32];
    non_canonical[0] = 0xed;
    non_canonical[31] = 0x7f;
    let mut flipped = x.clone();
    flipped[31] ^= 0x80;
    let mut other = x.clone();
    other[0] ^= 1;
    for (case, px) in [
        ("identity (small order)", identity),
        ("zero (small order)", vec![0; 32]),
        ("y = p (non-canonical)", non_canonical),
        ("sign bit flipped", flipped),
        ("another point or none", other),
        ("short", x[1..].to_vec()),
        ("long", [&x[..], &[0][..]].concat()),
    ] {
        with(format!("x {case}"), &|m| {
            m.insert("x".into(), json!(b64(&px)));
        });
    }
}
