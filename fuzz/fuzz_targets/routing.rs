//! Routing keys and subscription patterns of the event hub.
//!
//! The input is lines: the first is a pattern, the others routing keys (and, all together, the
//! words of a key built with `RoutingKey::from_words`). Never a panic; the matcher agrees with a
//! reference written straight from the definition (dynamic programming over pattern parts and key
//! words); the pattern's literal prefix, literal and "matches all" agree with what it matches; a key
//! built from words is always a valid key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_events::{Pattern, RoutingKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let pattern_text = lines.next().unwrap_or_default();
    let others: Vec<&str> = lines.collect();

    let built = RoutingKey::from_words(others.iter().copied());
    assert!(
        RoutingKey::new(built.as_str()).is_ok(),
        "from_words built an invalid key {:?}",
        built.as_str()
    );

    let pattern = Pattern::new(pattern_text);
    let mut keys: Vec<RoutingKey> = others
        .iter()
        .filter_map(|k| RoutingKey::new(k).ok())
        .collect();
    keys.push(built);
    if let Ok(key) = RoutingKey::new(pattern_text) {
        // A valid key is also a pattern that matches exactly itself.
        let literal = Pattern::new(pattern_text).expect("a routing key is a valid pattern");
        assert_eq!(literal.literal(), Some(key.as_str()));
        assert!(literal.matches(&key));
        keys.push(key);
    }
    let Ok(pattern) = pattern else {
        // Unvalidated keys must not panic the matcher either.
        return;
    };
    for other in &others {
        let _ = pattern.matches_str(other);
    }
    for key in &keys {
        check(&pattern, key);
    }
});

fn check(pattern: &Pattern, key: &RoutingKey) {
    let parts: Vec<&str> = pattern.as_str().split('.').collect();
    let words: Vec<&str> = key.words().collect();
    let matched = pattern.matches(key);
    assert_eq!(
        matched,
        reference(&parts, &words),
        "pattern {:?} key {:?}",
        pattern.as_str(),
        key.as_str()
    );
    if pattern.is_all() {
        assert!(matched);
    }
    if let Some(literal) = pattern.literal() {
        assert_eq!(matched, literal == key.as_str());
    }
    if matched {
        let prefix = pattern.literal_prefix();
        assert!(
            prefix.is_empty()
                || key.as_str() == prefix
                || key.as_str().starts_with(&format!("{prefix}.")),
            "key {:?} matches {:?} but lacks its literal prefix {prefix:?}",
            key.as_str(),
            pattern.as_str()
        );
    }
}

/// `m[i][j]`: whether `parts[i..]` matches `words[j..]`.
fn reference(parts: &[&str], words: &[&str]) -> bool {
    let (p, w) = (parts.len(), words.len());
    let mut m = vec![vec![false; w + 1]; p + 1];
    m[p][w] = true;
    for i in (0..p).rev() {
        for j in (0..=w).rev() {
            m[i][j] = match parts[i] {
                // Zero words, or one word and still `#`.
                "#" => m[i + 1][j] || (j < w && m[i][j + 1]),
                "*" => j < w && m[i + 1][j + 1],
                word => j < w && words[j] == word && m[i + 1][j + 1],
            };
        }
    }
    m[0][0]
}
