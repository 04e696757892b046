//! Canonical JSON text, for comparing documents across engines: PostgreSQL's jsonb reorders keys and
//! drops blanks, MariaDB and SQLite keep the text as written. Canonical form sorts object keys (by
//! their UTF-8 bytes), removes blanks, writes strings with the fewest escapes and numbers as
//! canonical decimals (so `1.0`, `1` and `1e0` are the same number). One pass, no maps.

use std::borrow::Cow;

use crate::decimal::Decimal;

/// Appends the canonical form of `text` to `out`; `Err(())` (and `out` unchanged) when `text` is not
/// one JSON document.
pub(crate) fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<(), ()> {
    let start = out.len();
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let ok = p.value(out).is_ok() && {
        p.ws();
        p.i == p.b.len()
    };
    if ok {
        Ok(())
    } else {
        out.truncate(start);
        Err(())
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Result<(), ()> {
        self.value_at(out, 0)
    }

    fn value_at(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), ()> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        self.ws();
        match self.b.get(self.i).copied().ok_or(())? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => {
                let s = self.string()?;
                write_string(&s, out);
                Ok(())
            }
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => Err(()),
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            out.extend_from_slice(word);
            Ok(())
        } else {
            Err(())
        }
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), ()> {
        let start = self.i;
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let token = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ())?;
        if !is_json_number(token) {
            return Err(());
        }
        if crate::decimal::is_canonical(token) {
            out.extend_from_slice(token.as_bytes());
        } else {
            let d = Decimal::parse(token).map_err(|_| ())?;
            out.extend_from_slice(d.as_str().as_bytes());
        }
        Ok(())
    }

    /// Parses a string literal at the cursor and returns its decoded contents (borrowed when the
    /// literal has no escapes, the common case).
    fn string(&mut self) -> Result<Cow<'a, str>, ()> {
        self.i += 1; // opening quote
        let start = self.i;
        while self.i < self.b.len()
            && self.b[self.i] != b'"'
            && self.b[self.i] != b'\\'
            && self.b[self.i] >= 0x20
        {
            self.i += 1;
        }
        if self.b.get(self.i) == Some(&b'"') {
            let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ())?;
            self.i += 1;
            return Ok(Cow::Borrowed(text));
        }
        let mut s = String::from(std::str::from_utf8(&self.b[start..self.i]).map_err(|_| ())?);
        loop {
            match self.b.get(self.i).copied().ok_or(())? {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(s));
                }
                b'\\' => {
                    let escape = *self.b.get(self.i + 1).ok_or(())?;
                    self.i += 2;
                    match escape {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(());
                                }
                                self.i += 2;
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return Err(());
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else {
                                first
                            };
                            s.push(char::from_u32(code).ok_or(())?);
                        }
                        _ => return Err(()),
                    }
                }
                c if c < 0x20 => return Err(()), // a raw control character
                _ => {
                    let run = self.i;
                    while self.i < self.b.len()
                        && self.b[self.i] != b'"'
                        && self.b[self.i] != b'\\'
                        && self.b[self.i] >= 0x20
                    {
                        self.i += 1;
                    }
                    s.push_str(std::str::from_utf8(&self.b[run..self.i]).map_err(|_| ())?);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ()> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(())?;
        let v = digits.iter().try_fold(0u32, |v, &d| {
            let d = char::from(d).to_digit(16).ok_or(())?;
            Ok(v * 16 + d)
        })?;
        self.i += 4;
        Ok(v)
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), ()> {
        self.i += 1;
        out.push(b'[');
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value_at(out, depth + 1)?;
            self.ws();
            match self.b.get(self.i).copied().ok_or(())? {
                b',' => {
                    self.i += 1;
                    out.push(b',');
                }
                b']' => {
                    self.i += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }

    /// Writes the members in place as they come; only when their keys are out of order are they
    /// rearranged (most documents from one writer keep one order).
    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), ()> {
        self.i += 1;
        out.push(b'{');
        let body = out.len();
        // (key, start, end) of each member's `"key":value` in `out`.
        let mut members: Vec<(Cow<'a, str>, usize, usize)> = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.b.get(self.i) != Some(&b'"') {
                    return Err(());
                }
                let key = self.string()?;
                self.ws();
                if self.b.get(self.i) != Some(&b':') {
                    return Err(());
                }
                self.i += 1;
                if !members.is_empty() {
                    out.push(b',');
                }
                let start = out.len();
                write_string(&key, out);
                out.push(b':');
                self.value_at(out, depth + 1)?;
                members.push((key, start, out.len()));
                self.ws();
                match self.b.get(self.i).copied().ok_or(())? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(()),
                }
            }
        }
        let sorted = members
            .windows(2)
            .all(|w| w[0].0.as_bytes() <= w[1].0.as_bytes());
        if !sorted {
            let written = out[body..].to_vec();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.truncate(body);
            for (n, (_, start, end)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&written[start - body..end - body]);
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// JSON's number grammar, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, with the exponent kept
/// within ±400 so that a canonical number stays short (a larger one is hashed as written).
fn is_json_number(token: &str) -> bool {
    let b = token.strip_prefix('-').unwrap_or(token).as_bytes();
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && b[0] == b'0') {
        return false;
    }
    let mut rest = &b[int_len..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if let Some(exp) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let digits = exp
            .strip_prefix(b"+")
            .or_else(|| exp.strip_prefix(b"-"))
            .unwrap_or(exp);
        let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
        let small = std::str::from_utf8(&digits[..n])
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
            .is_some_and(|e| e <= 400);
        return n > 0 && n == digits.len() && small;
    }
    rest.is_empty()
}

/// Writes a JSON string with only the escapes JSON requires, copying runs that need none.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                run = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(text: &str) -> Option<String> {
        let mut out = Vec::new();
        canonicalize(text, &mut out)
            .ok()
            .map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canon(r#" { "b" : [1.0, 2e1, -0.50], "a" : {"y": null, "x": "\u00e9\n"} } "#).unwrap(),
            r#"{"a":{"x":"é\n","y":null},"b":[1,20,-0.5]}"#
        );
        assert_eq!(canon(r#""\ud83d\ude00""#).unwrap(), "\"😀\"");
        assert_eq!(canon("[]").unwrap(), "[]");
        assert_eq!(canon("{}").unwrap(), "{}");
        assert_eq!(canon("true").unwrap(), "true");
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "tru",
            "\"\\x\"",
            "1 2",
            "\"a\nb\"",
            "{1:2}",
            "[1]]",
        ] {
            assert!(canon(bad).is_none(), "{bad:?}");
        }
        for bad in ["01", "1.", ".5", "+1", "1e", "1e4000", "-", "[01]"] {
            assert!(
                canon(bad).is_none(),
                "{bad:?} is not JSON (or too large to canonicalise)"
            );
        }
        assert_eq!(
            canon("[1e400, -0.0, 1E+2]").unwrap(),
            "[1e400,0,100]".replace("1e400", &format!("1{}", "0".repeat(400)))
        );
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(canon(&deep).is_none(), "deep nesting is refused");
    }

    /// Found by the `json_canonical` fuzz target: `\u` takes exactly four hex digits, and a sign
    /// is not one (`u32::from_str_radix` would read `+041` as 0x41).
    #[test]
    fn unicode_escapes_take_four_hex_digits() {
        assert_eq!(canon(r#""\u0041\u00e9""#).unwrap(), "\"Aé\"");
        for bad in [
            r#""\u+041""#,
            r#""\u-041""#,
            r#""\u 041""#,
            r#""\u41""#,
            r#""\ud83d\u+e00""#,
        ] {
            assert!(canon(bad).is_none(), "{bad}");
        }
    }

    proptest! {
        /// Whatever the strings hold (controls, quotes, backslashes, unicode, in keys and values),
        /// the canonical form is valid JSON that reads back as the same document.
        #[test]
        fn strings_survive_canonicalisation(entries in proptest::collection::btree_map("\\PC{0,6}|[\\x00-\\x1f\"\\\\]{0,3}", "\\PC{0,8}|[\\x00-\\x1f\"\\\\é]{0,4}", 0..6)) {
            let doc = serde_json::to_value(&entries).unwrap();
            let text = serde_json::to_string(&doc).unwrap();
            let c = canon(&text).unwrap();
            let back: serde_json::Value = serde_json::from_str(&c).unwrap();
            prop_assert_eq!(back, doc);
        }

        /// Equal documents (as serde_json sees them, numbers aside) have equal canonical forms,
        /// whatever their key order and spacing.
        #[test]
        fn key_order_and_spacing_do_not_matter(entries in proptest::collection::btree_map("[a-zé]{0,6}", "[a-z0-9 ]{0,8}", 0..8)) {
            let forward: Vec<String> = entries.iter().map(|(k, v)| format!("{:?} : {:?}", k, v)).collect();
            let backward: Vec<String> = entries.iter().rev().map(|(k, v)| format!("{:?}:{:?}", k, v)).collect();
            let a = canon(&format!("{{ {} }}", forward.join(" , "))).unwrap();
            let b = canon(&format!("{{{}}}", backward.join(","))).unwrap();
            prop_assert_eq!(&a, &b);
            let reparsed: serde_json::Value = serde_json::from_str(&a).unwrap();
            prop_assert_eq!(reparsed.as_object().unwrap().len(), entries.len());
        }
    }
}
