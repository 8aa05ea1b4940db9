//! Walks a JSON-RPC listing response once and cuts the hidden entries' bytes out of it; every other byte stays.
//!
//! What is read: each message's `id` (to find the awaited responses), their `result`, the list
//! in it and each entry's name; the rest is checked and skipped. A key that decides what is
//! cut may appear once: a client reading the first of two `id`s, `result`s or lists would see
//! what the filter did not judge, so such a response is unfilterable, and an entry naming
//! itself twice is hidden.

use crate::json_scan::{Malformed, Scan};
use crate::listing::{Keep, ListKind, Pending};
use serde_json::Value;

/// The output: the input with ranges cut or replaced, built only once something is cut.
pub(crate) struct Cuts<'a> {
    text: &'a str,
    /// Input bytes before this are in `out` (or cut).
    copied: usize,
    out: Vec<u8>,
    pub hidden: usize,
    pub answered: usize,
}

/// Where the output stood, to undo what a malformed SSE event had cut.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    copied: usize,
    len: usize,
    hidden: usize,
    answered: usize,
}

impl<'a> Cuts<'a> {
    pub fn new(text: &'a str) -> Cuts<'a> {
        Cuts {
            text,
            copied: 0,
            out: Vec::new(),
            hidden: 0,
            answered: 0,
        }
    }

    /// Replaces `start..end` of the input (at or after every earlier cut) with `with`; false
    /// when the range is out of order.
    pub fn replace(&mut self, start: usize, end: usize, with: &str) -> bool {
        let Some(kept) = self.text.get(self.copied..start) else {
            return false;
        };
        if end < start {
            return false;
        }
        if self.out.capacity() == 0 {
            self.out.reserve(self.text.len());
        }
        self.out.extend_from_slice(kept.as_bytes());
        self.out.extend_from_slice(with.as_bytes());
        self.copied = end;
        true
    }

    pub fn mark(&self) -> Mark {
        Mark {
            copied: self.copied,
            len: self.out.len(),
            hidden: self.hidden,
            answered: self.answered,
        }
    }

    pub fn reset(&mut self, m: Mark) {
        self.copied = m.copied;
        self.out.truncate(m.len);
        self.hidden = m.hidden;
        self.answered = m.answered;
    }

    /// The new body, or `None` when nothing was hidden.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.hidden == 0 {
            return None;
        }
        let rest = self.text.get(self.copied..).unwrap_or_default();
        self.out.extend_from_slice(rest.as_bytes());
        Some(self.out)
    }
}

/// One walk over a body (or an SSE event's data), its cuts going to `cuts`.
pub(crate) struct Walk<'p, 'k> {
    pub pending: &'p [Pending],
    pub keep: Keep<'k>,
    /// The body is JSON but an awaited response in it cannot be filtered.
    pub unfilterable: bool,
}

impl Walk<'_, '_> {
    /// One message or a batch of them, then nothing but whitespace.
    pub fn body<'a>(&mut self, s: &mut Scan<'a>, cuts: &mut Cuts<'a>) -> Result<(), Malformed> {
        if s.next_byte() == Some(b'[') {
            s.open(b'[')?;
            let mut first = true;
            while s.item(&mut first)? {
                self.message(s, cuts)?;
            }
        } else {
            self.message(s, cuts)?;
        }
        if s.at_end() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// The kind of the awaited request this `id` answers.
    fn awaited(&self, id: &str) -> Option<ListKind> {
        // Compared as values, as the requests' ids were read: `1` is not `1.0` nor `"1"`.
        let id = serde_json::from_slice::<Value>(id.as_bytes()).ok()?;
        self.pending.iter().find(|p| p.id == id).map(|p| p.kind)
    }

    fn message<'a>(&mut self, s: &mut Scan<'a>, cuts: &mut Cuts<'a>) -> Result<(), Malformed> {
        if s.next_byte() != Some(b'{') {
            // Not a message: nothing of it is awaited.
            return s.skip();
        }
        s.open(b'{')?;
        let mut first = true;
        let mut has_id = false;
        let mut has_result = false;
        // A second `id` or `result`: some client reads the one the filter did not.
        let mut twice = false;
        // The awaited listing this message answers (by any of its ids).
        let mut kind: Option<ListKind> = None;
        // A `result` before the `id`: read once the id says whether it is awaited.
        let mut later: Option<Scan<'a>> = None;
        while let Some(key) = s.key(&mut first)? {
            match &*key {
                "id" => {
                    twice |= std::mem::replace(&mut has_id, true);
                    kind = kind.or(self.awaited(s.skip_raw()?));
                }
                "result" => {
                    twice |= std::mem::replace(&mut has_result, true);
                    match (has_id, kind) {
                        (true, Some(kind)) => self.result(s, cuts, kind)?,
                        (true, None) => s.skip()?,
                        (false, _) => {
                            s.next_byte();
                            later = Some(*s);
                            s.skip()?;
                        }
                    }
                }
                _ => s.skip()?,
            }
        }
        let Some(kind) = kind else {
            return Ok(());
        };
        cuts.answered += 1;
        if twice {
            self.unfilterable = true;
        }
        // An error response lists nothing.
        if let Some(mut r) = later {
            self.result(&mut r, cuts, kind)?;
        }
        Ok(())
    }

    fn result<'a>(
        &mut self,
        s: &mut Scan<'a>,
        cuts: &mut Cuts<'a>,
        kind: ListKind,
    ) -> Result<(), Malformed> {
        if s.next_byte() != Some(b'{') {
            self.unfilterable = true;
            return s.skip();
        }
        s.open(b'{')?;
        let mut first = true;
        let mut listed = false;
        while let Some(key) = s.key(&mut first)? {
            if *key == *kind.field() {
                if std::mem::replace(&mut listed, true) {
                    self.unfilterable = true;
                }
                self.entries(s, cuts, kind)?;
            } else {
                s.skip()?;
            }
        }
        if !listed {
            self.unfilterable = true;
        }
        Ok(())
    }

    /// The list: each hidden entry is cut with the comma that joins it to a kept one.
    fn entries<'a>(
        &mut self,
        s: &mut Scan<'a>,
        cuts: &mut Cuts<'a>,
        kind: ListKind,
    ) -> Result<(), Malformed> {
        if s.next_byte() != Some(b'[') {
            self.unfilterable = true;
            return s.skip();
        }
        s.open(b'[')?;
        let mut first = true;
        let mut kept_any = false;
        // Hidden entries before the first kept one: cut up to the next entry's start.
        let mut head: Option<usize> = None;
        let mut last_end = 0;
        let mut in_order = true;
        while s.item(&mut first)? {
            let start = s.pos();
            let shown = self.entry(s, kind)?;
            let end = s.pos();
            if shown {
                if !kept_any {
                    kept_any = true;
                    if let Some(h) = head.take() {
                        in_order &= cuts.replace(h, start, "");
                    }
                }
            } else {
                cuts.hidden += 1;
                if kept_any {
                    in_order &= cuts.replace(last_end, end, "");
                } else if head.is_none() {
                    head = Some(start);
                }
            }
            last_end = end;
        }
        if let Some(h) = head {
            in_order &= cuts.replace(h, last_end, "");
        }
        if !in_order {
            self.unfilterable = true;
        }
        Ok(())
    }

    /// Whether an entry is shown: an object naming itself once, by a name the token sees.
    fn entry(&mut self, s: &mut Scan<'_>, kind: ListKind) -> Result<bool, Malformed> {
        if s.next_byte() != Some(b'{') {
            s.skip()?;
            return Ok(false);
        }
        s.open(b'{')?;
        let mut first = true;
        let mut names = 0;
        let mut name = None;
        while let Some(key) = s.key(&mut first)? {
            if *key != *kind.key() {
                s.skip()?;
                continue;
            }
            names += 1;
            name = if s.next_byte() == Some(b'"') {
                Some(s.string()?)
            } else {
                s.skip()?;
                None
            };
        }
        // An entry without its name cannot be judged: hidden.
        Ok(names == 1 && name.is_some_and(|n| (self.keep)(kind, &n)))
    }
}
