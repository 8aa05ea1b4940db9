//! Reads a wasm module's export section and rewrites it with only the exports a list keeps.
//!
//! Envoy enters the VM for every `proxy_on_*` callback a module exports, on every request, even
//! when the SDK's handler does nothing; the Rust SDK exports them all. Dropping the ones a filter
//! does not use removes those calls; `wasm-opt` then removes the code only they reached. Every
//! other section is copied byte for byte.

use std::fmt;

const MAGIC: &[u8; 8] = b"\0asm\x01\0\0\0";
const EXPORT_SECTION: u8 = 7;

/// One export: its name and its kind (0 function, 1 table, 2 memory, 3 global).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub kind: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotWasm,
    Truncated(&'static str),
    /// Listed exports the module does not have: the list is stale (an SDK rename, a typo).
    Missing(Vec<String>),
    BadList(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotWasm => write!(f, "not a wasm module (version 1)"),
            Error::Truncated(what) => write!(f, "module truncated or malformed in {what}"),
            Error::Missing(names) => write!(
                f,
                "the module does not export {} (listed to keep)",
                names.join(", ")
            ),
            Error::BadList(m) => write!(f, "export list: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The names in a keep list: one export per line, `#` starts a comment (the reason).
pub fn parse_list(text: &str) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.contains(char::is_whitespace) {
            return Err(Error::BadList(format!(
                "line {}: one export name per line, then `# reason`",
                i + 1
            )));
        }
        if names.iter().any(|n| n == line) {
            return Err(Error::BadList(format!("line {}: `{line}` twice", i + 1)));
        }
        names.push(line.to_string());
    }
    if names.is_empty() {
        return Err(Error::BadList("no exports listed".into()));
    }
    Ok(names)
}

fn leb_u32(bytes: &[u8], pos: &mut usize, what: &'static str) -> Result<u32, Error> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos).ok_or(Error::Truncated(what))?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| Error::Truncated(what));
        }
    }
    Err(Error::Truncated(what))
}

fn put_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn take<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    let end = pos.checked_add(n).ok_or(Error::Truncated(what))?;
    let s = bytes.get(*pos..end).ok_or(Error::Truncated(what))?;
    *pos = end;
    Ok(s)
}

/// The module's sections as (id, contents).
fn sections(module: &[u8]) -> Result<Vec<(u8, &[u8])>, Error> {
    if module.get(..8) != Some(MAGIC.as_slice()) {
        return Err(Error::NotWasm);
    }
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = leb_u32(module, &mut pos, "a section header")? as usize;
        out.push((id, take(module, &mut pos, size, "a section")?));
    }
    Ok(out)
}

/// Each export's name and kind, with its encoded bytes.
fn entries(section: &[u8]) -> Result<Vec<(Export, &[u8])>, Error> {
    let mut pos = 0;
    let n = leb_u32(section, &mut pos, "the export count")?;
    let mut out = Vec::new();
    for _ in 0..n {
        let start = pos;
        let len = leb_u32(section, &mut pos, "an export name")? as usize;
        let name =
            String::from_utf8_lossy(take(section, &mut pos, len, "an export name")?).into_owned();
        let kind = *take(section, &mut pos, 1, "an export kind")?
            .first()
            .ok_or(Error::Truncated("an export kind"))?;
        leb_u32(section, &mut pos, "an export index")?;
        out.push((Export { name, kind }, &section[start..pos]));
    }
    Ok(out)
}

/// The module's exports, in order.
pub fn exports(module: &[u8]) -> Result<Vec<Export>, Error> {
    let mut out = Vec::new();
    for (id, body) in sections(module)? {
        if id == EXPORT_SECTION {
            out.extend(entries(body)?.into_iter().map(|(e, _)| e));
        }
    }
    Ok(out)
}

/// The module with only the exports named in `keep`; every listed name must be exported.
pub fn keep_only(module: &[u8], keep: &[String]) -> Result<Vec<u8>, Error> {
    let have = exports(module)?;
    let missing: Vec<String> = keep
        .iter()
        .filter(|k| !have.iter().any(|e| &e.name == *k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Error::Missing(missing));
    }
    let mut out = MAGIC.to_vec();
    for (id, body) in sections(module)? {
        let body = if id == EXPORT_SECTION {
            let kept: Vec<&[u8]> = entries(body)?
                .into_iter()
                .filter(|(e, _)| keep.contains(&e.name))
                .map(|(_, raw)| raw)
                .collect();
            let mut b = Vec::new();
            put_leb(&mut b, kept.len() as u32);
            kept.iter().for_each(|raw| b.extend_from_slice(raw));
            b
        } else {
            body.to_vec()
        };
        out.push(id);
        put_leb(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with one function exported under two names and a memory.
    fn module() -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        // type section: one type () -> ()
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
        // function section: one function of type 0
        m.extend_from_slice(&[3, 2, 1, 0]);
        // memory section: one memory, min 1
        m.extend_from_slice(&[5, 3, 1, 0, 1]);
        let mut ex = vec![3];
        for (name, kind) in [("a", 0u8), ("memory", 2), ("b", 0)] {
            ex.push(name.len() as u8);
            ex.extend_from_slice(name.as_bytes());
            ex.extend_from_slice(&[kind, 0]);
        }
        m.push(EXPORT_SECTION);
        m.push(ex.len() as u8);
        m.extend_from_slice(&ex);
        // code section: one empty body
        m.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]);
        m
    }

    fn names(m: &[u8]) -> Vec<String> {
        exports(m).unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn keeps_the_listed_exports_and_every_other_section() {
        let m = module();
        assert_eq!(names(&m), ["a", "memory", "b"]);
        let out = keep_only(&m, &["memory".into(), "b".into()]).unwrap();
        assert_eq!(names(&out), ["memory", "b"]);
        // Type, function, memory and code sections unchanged.
        assert!(out.ends_with(&[10, 4, 1, 2, 0, 0x0b]));
        assert_eq!(out[..8 + 6 + 4 + 5], m[..8 + 6 + 4 + 5]);
        // Idempotent.
        assert_eq!(
            keep_only(&out, &["memory".into(), "b".into()]).unwrap(),
            out
        );
    }

    #[test]
    fn a_stale_list_is_an_error() {
        let err = keep_only(&module(), &["proxy_on_gone".into()]).unwrap_err();
        assert_eq!(err, Error::Missing(vec!["proxy_on_gone".into()]));
    }

    #[test]
    fn lists_take_one_name_per_line_with_reasons() {
        let l = parse_list("# header\nmemory  # the host reads it\n\nb\n").unwrap();
        assert_eq!(l, ["memory", "b"]);
        assert!(parse_list("a b\n").is_err());
        assert!(parse_list("a\na\n").is_err());
        assert!(parse_list("# nothing\n").is_err());
    }

    #[test]
    fn not_wasm_is_refused() {
        assert_eq!(exports(b"hello").unwrap_err(), Error::NotWasm);
        let mut m = module();
        m.truncate(m.len() - 2);
        assert!(matches!(exports(&m), Err(Error::Truncated(_))));
    }
}
