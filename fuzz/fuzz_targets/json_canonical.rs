//! The canonical JSON form that JSON column values are compared in (sluice-model's `json`).
//!
//! Never a panic. On refusal the output buffer is left as it was. An accepted document's canonical
//! form is UTF-8, is its own canonical form (idempotence), and means the same document as the
//! input to serde_json. serde_json and the canonicaliser accept the same texts, except where each
//! documents a limit: serde_json refuses nesting deeper than 128 and numbers beyond the range of a
//! double, the canonicaliser refuses exponents beyond ±400 (and nesting deeper than 512).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use sluice_model::fuzzing::canonical_json;

const PREFIX: &[u8] = b"prefix";

fn canonical(text: &str) -> Option<Vec<u8>> {
    let mut out = PREFIX.to_vec();
    let ok = canonical_json(text, &mut out);
    assert_eq!(&out[..PREFIX.len()], PREFIX, "the output's prefix changed");
    if ok {
        Some(out.split_off(PREFIX.len()))
    } else {
        assert_eq!(out, PREFIX, "a refused document left output behind");
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let canon = canonical(text);
    let serde: Result<Json, _> = serde_json::from_str(text);
    let Some(canon) = canon else {
        if serde.is_ok() {
            assert!(
                has_large_exponent(text),
                "serde_json reads the document but the canonicaliser refuses it"
            );
        }
        return;
    };
    let canon_text = std::str::from_utf8(&canon).expect("the canonical form is UTF-8");
    let twice = canonical(canon_text).expect("the canonical form is JSON");
    assert_eq!(
        canon_text,
        std::str::from_utf8(&twice).expect("UTF-8"),
        "the canonical form is not its own canonical form"
    );
    match serde {
        Ok(doc) => {
            let back: Json = serde_json::from_str(canon_text)
                .expect("serde_json reads the canonical form of a document it reads");
            assert!(
                same(&doc, &back),
                "the canonical form means another document: {doc} vs {back}"
            );
        }
        Err(e) => {
            let why = e.to_string();
            assert!(
                why.starts_with("recursion limit exceeded")
                    || why.starts_with("number out of range"),
                "the canonicaliser accepts a document serde_json refuses: {why}"
            );
        }
    }
});

/// Equal documents, numbers compared as doubles (serde_json's parse of two spellings of one number
/// may differ in the last bits).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (
                x.as_f64().expect("a finite number"),
                y.as_f64().expect("a finite number"),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) || (x - y).abs() < 1e-300
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether a number of `text` (valid JSON) has an exponent beyond ±400.
fn has_large_exponent(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                if let Some(at) = token.find(['e', 'E']) {
                    let digits = token[at + 1..].trim_start_matches(['+', '-']);
                    let digits = digits.trim_start_matches('0');
                    if digits.len() > 3 || digits.parse::<u32>().is_ok_and(|e| e > 400) {
                        return true;
                    }
                }
            }
            _ => i += 1,
        }
    }
    false
}
