//! A JSON text validated and hashed by meaning in one pass, with no tree and no allocation
//! per value: the hot path of both directions (every JSON value is hashed when it is sent and
//! again when it is read back). The hash is [`super::json_hash`] of the parsed document.
//!
//! It accepts exactly RFC 8259 JSON, as `serde_json` does: no trailing commas, no leading
//! zeros, no control characters or lone surrogates in strings, at most [`MAX_DEPTH`] levels.
//! Replacing a `serde_json` `DeserializeSeed` with this cut the guest's JSON time by about
//! two thirds (see the README's performance section).

use super::{bytes_hash, chain, json_number_hash, number, seed};

/// Nesting deeper than this is refused (as `serde_json`'s recursion limit does), so a hostile
/// document cannot exhaust the component's stack.
pub const MAX_DEPTH: usize = 128;

/// Why a text is not JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub reason: &'static str,
    /// Byte offset of the problem in the text.
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line {} column {}", self.reason, self.line, self.column)
    }
}

impl std::error::Error for JsonError {}

/// What hashing a JSON text found: its hash and whether a string or key holds a NUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonDigest {
    pub hash: u64,
    pub has_nul: bool,
}

/// Validate `text` as one JSON document and hash it by meaning.
pub fn digest(text: &[u8]) -> Result<JsonDigest, JsonError> {
    // Outside strings JSON is ASCII, so checking the whole text once covers every string.
    if let Err(e) = std::str::from_utf8(text) {
        return Err(error_at(text, e.valid_up_to(), "invalid UTF-8"));
    }
    let mut s =
        Scanner { text, pos: 0, depth: 0, has_nul: false, items: Vec::new(), entries: Vec::new(), scratch: Vec::new() };
    s.skip_whitespace();
    let hash = s.value()?;
    s.skip_whitespace();
    if s.pos < text.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(JsonDigest { hash, has_nul: s.has_nul })
}

fn error_at(text: &[u8], offset: usize, reason: &'static str) -> JsonError {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = before.len() - before.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1) + 1;
    JsonError { reason, offset, line, column }
}

/// A decoded string: a range of the text (no escapes) or of the scratch buffer.
#[derive(Clone, Copy)]
struct Str {
    in_scratch: bool,
    start: u32,
    end: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    key: Str,
    value: u64,
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    depth: usize,
    has_nul: bool,
    /// Item hashes of the open arrays, innermost last.
    items: Vec<u64>,
    /// Entries of the open objects, innermost last.
    entries: Vec<Entry>,
    /// Strings that had escapes, decoded; keys stay until their object is hashed.
    scratch: Vec<u8>,
}

fn bytes<'b>(text: &'b [u8], scratch: &'b [u8], s: Str) -> &'b [u8] {
    let range = s.start as usize..s.end as usize;
    if s.in_scratch { &scratch[range] } else { &text[range] }
}

/// Where the run of string bytes starting at `from` ends: the first `"`, `\\` or control
/// character, or the end of the text. Eight bytes at a time, as `serde_json` does: a byte
/// is found when subtracting one from it (after the XOR that makes it zero) borrows.
pub(crate) fn plain_run_end(text: &[u8], mut from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = text.get(from..from + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let (quote, backslash) = (w ^ (ONES * b'"' as u64), w ^ (ONES * b'\\' as u64));
        let found = ((w.wrapping_sub(ONES * 0x20) & !w)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if found != 0 {
            // Little-endian: the lowest set bit is the first such byte (borrows only run upwards).
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < text.len() && !matches!(text[from], b'"' | b'\\' | 0..0x20) {
        from += 1;
    }
    from
}

impl Scanner<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        error_at(self.text, self.pos, reason)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<u64, JsonError> {
        match self.text.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let mark = self.scratch.len();
                let s = self.string()?;
                let hash = bytes_hash(bytes(self.text, &self.scratch, s), seed::JSON_STRING);
                self.scratch.truncate(mark);
                Ok(hash)
            }
            Some(b't') => self.literal(b"true", number(seed::JSON_BOOL, 1)),
            Some(b'f') => self.literal(b"false", number(seed::JSON_BOOL, 0)),
            Some(b'n') => self.literal(b"null", number(seed::JSON_NULL, 0)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn literal(&mut self, word: &[u8], hash: u64) -> Result<u64, JsonError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(hash)
        } else {
            Err(self.error("expected value"))
        }
    }

    fn number(&mut self) -> Result<u64, JsonError> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.text.get(s.pos).is_some_and(u8::is_ascii_digit) {
                s.pos += 1;
            }
            s.pos > from
        };
        if self.text[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.text.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.text.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.text.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.text.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("invalid number"));
            }
        }
        // ASCII by construction.
        let text = std::str::from_utf8(&self.text[start..self.pos]).expect("digits are ASCII");
        Ok(json_number_hash(text))
    }

    /// A string starting at the opening quote; escapes are decoded into the scratch buffer.
    fn string(&mut self) -> Result<Str, JsonError> {
        self.pos += 1;
        let start = self.pos;
        let text = self.text;
        // Most strings have no escapes: they are a range of the text itself.
        self.pos = plain_run_end(text, self.pos);
        loop {
            match text.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Str { in_scratch: false, start: start as u32, end: (self.pos - 1) as u32 });
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => {
                    return Err(self.error("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                Some(_) => self.pos += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
        let decoded = self.scratch.len();
        self.scratch.extend_from_slice(&text[start..self.pos]);
        loop {
            match text.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Str { in_scratch: true, start: decoded as u32, end: self.scratch.len() as u32 });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let unescaped = match text.get(self.pos) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            self.has_nul |= c == '\0';
                            let mut buf = [0u8; 4];
                            self.scratch.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        Some(_) => return Err(self.error("invalid escape")),
                        None => return Err(self.error("EOF while parsing a string")),
                    };
                    self.pos += 1;
                    self.scratch.push(unescaped);
                }
                Some(&c) if c < 0x20 => {
                    return Err(self.error("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                Some(_) => {
                    let end = plain_run_end(text, self.pos + 1);
                    self.scratch.extend_from_slice(&text[self.pos..end]);
                    self.pos = end;
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.text[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            c => c,
        };
        Ok(char::from_u32(code).expect("surrogates are handled above"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(digits) = self.text.get(self.pos..self.pos + 4) else {
            return Err(self.error("EOF while parsing a string"));
        };
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char).to_digit(16).ok_or_else(|| self.error("invalid escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.pos += 1;
        self.skip_whitespace();
        Ok(())
    }

    /// After an item or entry: a comma (more follow; `false`) or `close` (the end; `true`).
    fn closed_after_member(
        &mut self,
        close: u8,
        unexpected: &'static str,
        eof: &'static str,
    ) -> Result<bool, JsonError> {
        self.skip_whitespace();
        match self.text.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                Ok(false)
            }
            Some(&c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Err(self.error(unexpected)),
            None => Err(self.error(eof)),
        }
    }

    fn array(&mut self) -> Result<u64, JsonError> {
        self.enter()?;
        let base = self.items.len();
        if self.text.get(self.pos) == Some(&b']') {
            self.pos += 1;
        } else {
            loop {
                let item = self.value()?;
                self.items.push(item);
                if self.closed_after_member(b']', "expected `,` or `]`", "EOF while parsing a list")? {
                    break;
                }
            }
        }
        let items = &self.items[base..];
        let hash = items.iter().fold(number(seed::JSON_ARRAY, items.len() as u64), |h, i| chain(h, *i));
        self.items.truncate(base);
        self.depth -= 1;
        Ok(hash)
    }

    fn object(&mut self) -> Result<u64, JsonError> {
        self.enter()?;
        let (base, mark) = (self.entries.len(), self.scratch.len());
        if self.text.get(self.pos) == Some(&b'}') {
            self.pos += 1;
        } else {
            loop {
                if self.text.get(self.pos) != Some(&b'"') {
                    return Err(self.error(if self.pos < self.text.len() {
                        "key must be a string"
                    } else {
                        "EOF while parsing an object"
                    }));
                }
                let key = self.string()?;
                self.skip_whitespace();
                if self.text.get(self.pos) != Some(&b':') {
                    return Err(self.error("expected `:`"));
                }
                self.pos += 1;
                self.skip_whitespace();
                let value = self.value()?;
                self.entries.push(Entry { key, value });
                if self.closed_after_member(b'}', "expected `,` or `}`", "EOF while parsing an object")? {
                    break;
                }
            }
        }
        // By key, as a sorted map holds them; of duplicate keys the last wins (jsonb's rule).
        let (text, scratch) = (self.text, &self.scratch);
        let entries = &mut self.entries[base..];
        entries.sort_by(|a, b| bytes(text, scratch, a.key).cmp(bytes(text, scratch, b.key)));
        let mut kept = 0usize;
        for i in 0..entries.len() {
            if kept > 0 && bytes(text, scratch, entries[kept - 1].key) == bytes(text, scratch, entries[i].key) {
                entries[kept - 1] = entries[i];
            } else {
                entries[kept] = entries[i];
                kept += 1;
            }
        }
        let hash = entries[..kept].iter().fold(number(seed::JSON_OBJECT, kept as u64), |h, e| {
            chain(chain(h, bytes_hash(bytes(text, scratch, e.key), seed::JSON_KEY)), e.value)
        });
        self.entries.truncate(base);
        self.scratch.truncate(mark);
        self.depth -= 1;
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> JsonDigest {
        digest(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn refuses_what_is_not_json() {
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        ok(&deep_ok);
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        for bad in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "-01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "1e+",
            "[1 2]",
            "1 2",
            "nul",
            "tru",
            "True",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"a\tb\"",
            "\"a\nb\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "[1]x",
            "{\"a\":1}}",
            "NaN",
            "Infinity",
            "'a'",
        ] {
            assert!(digest(bad.as_bytes()).is_err(), "{bad:?} must be refused");
        }
        assert!(digest(too_deep.as_bytes()).unwrap_err().reason.contains("recursion"));
        assert!(digest(b"\"\xff\"").unwrap_err().reason.contains("UTF-8"));
    }

    #[test]
    fn string_runs_end_at_the_first_special_byte() {
        for len in 0..20 {
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                for at in 0..=len {
                    let mut text: Vec<u8> = (0..len).map(|i| [b'a', 0xc3, 0xa9, 0x7f, b' '][i % 5]).collect();
                    if at < len {
                        text[at] = special;
                        text.push(b'"');
                    }
                    assert_eq!(plain_run_end(&text, 0), at, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let e = digest(b"{\n  \"a\": [1,\n   ]\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 4), "{e}");
        assert_eq!(e.to_string(), "expected value at line 3 column 4");
    }

    #[test]
    fn escapes_decode_before_hashing() {
        assert_eq!(ok(r#""caf\u00e9""#), ok("\"café\""));
        assert_eq!(ok(r#""\ud83d\ude00""#), ok("\"😀\""));
        assert_eq!(ok(r#"{"\u006b": 1}"#), ok(r#"{"k": 1}"#));
        assert_eq!(ok(r#""a\/b""#), ok(r#""a/b""#));
        assert!(ok(r#"{"a": "\u0000"}"#).has_nul);
        assert!(ok(r#"{"\u0000": 1}"#).has_nul);
        assert!(!ok(r#"{"a": "\\u0000"}"#).has_nul);
    }

    #[test]
    fn a_key_like_serde_jsons_number_token_is_just_a_key() {
        // serde_json (arbitrary_precision) would read this object as the number 12.
        assert_ne!(ok(r#"{"$serde_json::private::Number": "12"}"#).hash, ok("12").hash);
    }
}
