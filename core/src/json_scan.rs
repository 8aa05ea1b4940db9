//! A strict JSON (RFC 8259) scanner over borrowed text: values read in place or skipped, each position a byte offset, nothing built.
//!
//! The listing filter walks a response with it and cuts byte ranges out, so the text it does
//! not read must still be checked: a client parses every byte the filter passes on.

use std::borrow::Cow;

/// The text is not JSON, or nests deeper than serde_json's parser allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// serde_json refuses the 128th nested container; so does the scanner, so that a body the
/// `Value` parse refused for its depth is refused here too.
const MAX_DEPTH: usize = 127;

/// A position in a text, with the containers the caller has entered.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Scan<'a> {
    /// A scan of `text` from byte `pos` (a value, or whitespace before one).
    pub fn new(text: &'a str, pos: usize) -> Scan<'a> {
        Scan {
            text,
            pos,
            depth: 0,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The first byte of the next value, its whitespace skipped.
    pub fn next_byte(&mut self) -> Option<u8> {
        self.ws();
        self.peek()
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.text.len()
    }

    fn eat(&mut self, b: u8) -> Result<(), Malformed> {
        if self.peek() != Some(b) {
            return Err(Malformed);
        }
        self.pos += 1;
        Ok(())
    }

    /// Enters the object (`{`) or array (`[`) that starts here.
    pub fn open(&mut self, bracket: u8) -> Result<(), Malformed> {
        self.ws();
        if self.depth >= MAX_DEPTH {
            return Err(Malformed);
        }
        self.eat(bracket)?;
        self.depth += 1;
        Ok(())
    }

    /// The next key of an entered object, its `:` consumed (its value comes next); `None` once
    /// the object is closed. `first` is true before the first key.
    pub fn key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>, Malformed> {
        if !self.member(first, b'}')? {
            return Ok(None);
        }
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        Ok(Some(key))
    }

    /// Whether an entered array has another item, the scan at its first byte; false once the
    /// array is closed. `first` is true before the first item.
    pub fn item(&mut self, first: &mut bool) -> Result<bool, Malformed> {
        let more = self.member(first, b']')?;
        self.ws();
        Ok(more)
    }

    /// Past the `,` before the next member, or past the closing bracket (false).
    fn member(&mut self, first: &mut bool, close: u8) -> Result<bool, Malformed> {
        self.ws();
        let at_first = std::mem::replace(first, false);
        match self.peek() {
            Some(c) if c == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !at_first => {
                self.pos += 1;
                self.ws();
                Ok(true)
            }
            _ if at_first => Ok(true),
            _ => Err(Malformed),
        }
    }

    /// A string value, decoded: borrowed unless it holds escapes (a lone surrogate is refused,
    /// as serde_json refuses it).
    pub fn string(&mut self) -> Result<Cow<'a, str>, Malformed> {
        self.ws();
        let start = self.pos;
        let escaped = self.skip_string()?;
        let raw = self.text.get(start..self.pos).ok_or(Malformed)?;
        if escaped {
            return serde_json::from_slice::<String>(raw.as_bytes())
                .map(Cow::Owned)
                .map_err(|_| Malformed);
        }
        raw.get(1..raw.len() - 1)
            .map(Cow::Borrowed)
            .ok_or(Malformed)
    }

    /// Past a string; whether it holds escapes. The text is UTF-8 already (a `&str`).
    fn skip_string(&mut self) -> Result<bool, Malformed> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            let b = *bytes.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            match b {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    let e = *bytes.get(self.pos).ok_or(Malformed)?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                if !bytes.get(self.pos).is_some_and(u8::is_ascii_hexdigit) {
                                    return Err(Malformed);
                                }
                                self.pos += 1;
                            }
                        }
                        _ => return Err(Malformed),
                    }
                }
                0..=0x1f => return Err(Malformed),
                _ => {}
            }
        }
    }

    fn digits(&mut self) -> Result<(), Malformed> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(Malformed);
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), Malformed> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else {
            self.digits()?;
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) != Some(word) {
            return Err(Malformed);
        }
        self.pos = end;
        Ok(())
    }

    /// An object key inside a skipped value, up to its value.
    fn skipped_key(&mut self) -> Result<(), Malformed> {
        self.ws();
        self.skip_string()?;
        self.ws();
        self.eat(b':')
    }

    /// Past the next value, checked but not built; nesting is tracked in a bit stack, so a deep
    /// value costs no recursion.
    pub fn skip(&mut self) -> Result<(), Malformed> {
        // Bit i: the container opened i-th by this skip (still open) is an object.
        let mut objects: u128 = 0;
        let mut open = 0usize;
        loop {
            // A value starts here.
            self.ws();
            match self.peek() {
                Some(b @ (b'{' | b'[')) => {
                    if self.depth + open >= MAX_DEPTH {
                        return Err(Malformed);
                    }
                    self.pos += 1;
                    let object = b == b'{';
                    if object {
                        objects |= 1 << open;
                    } else {
                        objects &= !(1 << open);
                    }
                    open += 1;
                    self.ws();
                    if self.peek() == Some(if object { b'}' } else { b']' }) {
                        self.pos += 1;
                        open -= 1;
                    } else {
                        if object {
                            self.skipped_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.skip_string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(Malformed),
            }
            // A value ended: close what ends with it, or go on to the next member.
            loop {
                if open == 0 {
                    return Ok(());
                }
                self.ws();
                let object = objects & (1 << (open - 1)) != 0;
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.skipped_key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        open -= 1;
                    }
                    _ => return Err(Malformed),
                }
            }
        }
    }

    /// Past the next value; the text it spans.
    pub fn skip_raw(&mut self) -> Result<&'a str, Malformed> {
        self.ws();
        let start = self.pos;
        self.skip()?;
        self.text.get(start..self.pos).ok_or(Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) -> bool {
        let mut s = Scan::new(text, 0);
        s.skip().is_ok() && s.at_end()
    }

    #[test]
    fn accepts_what_serde_json_accepts_and_refuses_the_rest() {
        let deep_ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let too_deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        for (text, ok) in [
            (
                r#"{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"],"b":{}}"#,
                true,
            ),
            (" [ ] ", true),
            ("0", true),
            ("-0.0E-0", true),
            (deep_ok.as_str(), true),
            (too_deep.as_str(), false),
            ("01", false),
            ("1.", false),
            ("-", false),
            (".5", false),
            ("[1,]", false),
            (r#"{"a":1,}"#, false),
            (r#"{"a" 1}"#, false),
            (r#"{1:1}"#, false),
            ("[1}", false),
            ("{]", false),
            (r#""a\x""#, false),
            (r#""\u00g0""#, false),
            ("\"a\tb\"", false),
            ("tru", false),
            ("nulll", false),
            ("[1] [2]", false),
            ("", false),
            ("\u{feff}1", false),
        ] {
            assert_eq!(valid(text), ok, "{text}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                ok,
                "serde_json disagrees on {text}"
            );
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let mut s = Scan::new(r#" "plain" "a\u0062c" "\ud800" "#, 0);
        assert!(matches!(s.string(), Ok(Cow::Borrowed("plain"))));
        assert_eq!(s.string().unwrap(), "abc");
        assert_eq!(s.string(), Err(Malformed));
    }

    #[test]
    fn deep_values_skip_without_recursion_within_the_limit() {
        let mut s = Scan::new("[[[[1]]]]", 0);
        s.depth = MAX_DEPTH - 4;
        assert_eq!(s.skip(), Ok(()));
        let mut s = Scan::new("[[[[1]]]]", 0);
        s.depth = MAX_DEPTH - 3;
        assert_eq!(s.skip(), Err(Malformed));
    }
}
