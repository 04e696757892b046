//! Routing keys and the one pattern language of subscriptions and history queries.
//!
//! A routing key is one or more dot-separated words (`plant1.line2.temp`). A pattern is the same
//! with two wildcards as whole words: `*` matches exactly one word, `#` zero or more words
//! (`plant1.#`, `*.line2.*`, `#.temp`, `#`). Live streams, history queries, exports and "last per
//! key" all take this language, so what a client sees live it can also query later. Patterns
//! never reach SQL or a regex engine; matching is linear in the words of the key for patterns with
//! at most one `#`, and bounded by `words(pattern) × words(key)` otherwise.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest routing key or pattern, in bytes.
pub const MAX_ROUTING_LEN: usize = 255;

fn word_ok(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@'))
}

fn check_words(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if text.len() > MAX_ROUTING_LEN {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_ROUTING_LEN}",
            text.len()
        ));
    }
    Ok(())
}

/// A validated routing key: dot-separated words of letters, digits, `_`, `-`, `:` and `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingKey(String);

impl RoutingKey {
    /// Validates `text`.
    pub fn new(text: &str) -> Result<Self, String> {
        check_words(text, "routing key")?;
        for (i, word) in text.split('.').enumerate() {
            if !word_ok(word) {
                return Err(if word.is_empty() {
                    format!(
                        "routing key {text:?}: word {} is empty (two dots in a row, or a leading or trailing dot)",
                        i + 1
                    )
                } else if word == "*" || word == "#" {
                    format!(
                        "routing key {text:?}: wildcards ({word}) belong in subscription patterns, not in the routing key of an event"
                    )
                } else {
                    format!(
                        "routing key {text:?}: word {word:?} may only hold letters, digits, '_', '-', ':' and '@'"
                    )
                });
            }
        }
        Ok(RoutingKey(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds a key from words, replacing characters a word may not hold with `_` (for keys made
    /// from names, e.g. `<hub>.<channel>.<job_type>`).
    pub fn from_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        let words: Vec<String> = words
            .into_iter()
            .map(|w| {
                let cleaned: String = w
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if cleaned.is_empty() {
                    "_".to_owned()
                } else {
                    cleaned
                }
            })
            .collect();
        let mut text = words.join(".");
        if text.is_empty() {
            text.push('_');
        }
        text.truncate(MAX_ROUTING_LEN);
        while text.ends_with('.') {
            text.pop();
        }
        RoutingKey(text)
    }

    /// The words.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RoutingKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RoutingKey::new(s)
    }
}

impl Serialize for RoutingKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoutingKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RoutingKey::new(&text).map_err(serde::de::Error::custom)
    }
}

/// One word of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Word(String),
    /// `*`: exactly one word.
    One,
    /// `#`: zero or more words.
    Any,
}

/// A subscription pattern: a routing key whose words may be `*` (one word) or `#` (zero or more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    parts: Vec<Part>,
}

impl Pattern {
    /// Parses `text`. An empty pattern is refused; use `#` for "everything".
    pub fn new(text: &str) -> Result<Self, String> {
        check_words(text, "routing pattern")?;
        let mut parts: Vec<Part> = Vec::new();
        for (i, word) in text.split('.').enumerate() {
            let part = match word {
                "*" => Part::One,
                "#" => Part::Any,
                w if word_ok(w) => Part::Word(w.to_owned()),
                "" => {
                    return Err(format!(
                        "routing pattern {text:?}: word {} is empty (two dots in a row, or a leading or trailing dot)",
                        i + 1
                    ));
                }
                w => {
                    return Err(format!(
                        "routing pattern {text:?}: word {w:?} is neither a word (letters, digits, '_', '-', ':', '@') nor a whole-word wildcard '*' or '#'"
                    ));
                }
            };
            // `#.#` means the same as `#`; keep one so matching stays cheap.
            if part == Part::Any && parts.last() == Some(&Part::Any) {
                continue;
            }
            parts.push(part);
        }
        Ok(Pattern {
            text: text.to_owned(),
            parts,
        })
    }

    /// The pattern matching every key (`#`).
    pub fn all() -> Self {
        Pattern {
            text: "#".to_owned(),
            parts: vec![Part::Any],
        }
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this pattern matches every key.
    pub fn is_all(&self) -> bool {
        self.parts == [Part::Any]
    }

    /// The routing key this pattern matches exactly, when it has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        self.parts
            .iter()
            .all(|p| matches!(p, Part::Word(_)))
            .then_some(self.text.as_str())
    }

    /// The leading words before the first wildcard, joined with dots (`a.b` for `a.b.*.c`); empty
    /// when the pattern starts with a wildcard. Every matching key starts with these words; stores
    /// use it to narrow a scan before [`Pattern::matches`] decides.
    pub fn literal_prefix(&self) -> String {
        self.parts
            .iter()
            .map_while(|p| match p {
                Part::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &RoutingKey) -> bool {
        self.matches_str(key.as_str())
    }

    /// Whether the routing key `key` (assumed valid) matches.
    pub fn matches_str(&self, key: &str) -> bool {
        let words: Vec<&str> = key.split('.').collect();
        match_parts(&self.parts, &words)
    }
}

/// Iterative matcher with one backtrack point per `#` (the classic glob algorithm over words):
/// O(parts × words) in the worst case, no recursion.
fn match_parts(parts: &[Part], words: &[&str]) -> bool {
    let (mut p, mut w) = (0usize, 0usize);
    // Where the last `#` was, and how many words it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while w < words.len() {
        match parts.get(p) {
            Some(Part::Word(x)) if x == words[w] => {
                p += 1;
                w += 1;
            }
            Some(Part::One) => {
                p += 1;
                w += 1;
            }
            Some(Part::Any) => {
                star = Some((p, w));
                p += 1;
            }
            _ => match star {
                Some((sp, sw)) => {
                    // Let the last `#` swallow one more word and retry.
                    star = Some((sp, sw + 1));
                    p = sp + 1;
                    w = sw + 1;
                }
                None => return false,
            },
        }
    }
    parts[p..].iter().all(|x| *x == Part::Any)
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Pattern::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The naive reference: recursive, straight from the definition.
    fn naive(parts: &[&str], words: &[&str]) -> bool {
        match parts.split_first() {
            None => words.is_empty(),
            Some((&"#", rest)) => (0..=words.len()).any(|k| naive(rest, &words[k..])),
            Some((&"*", rest)) => !words.is_empty() && naive(rest, &words[1..]),
            Some((w, rest)) => words.first() == Some(w) && naive(rest, &words[1..]),
        }
    }

    fn m(p: &str, k: &str) -> bool {
        Pattern::new(p)
            .expect("valid pattern")
            .matches(&RoutingKey::new(k).expect("valid key"))
    }

    #[test]
    fn examples() {
        assert!(m("#", "a"));
        assert!(m("#", "a.b.c"));
        assert!(m("a.#", "a"));
        assert!(m("a.#", "a.b.c"));
        assert!(!m("a.#", "b.a"));
        assert!(m("*.b", "a.b"));
        assert!(!m("*.b", "b"));
        assert!(!m("*.b", "x.a.b"));
        assert!(m("#.b", "b"));
        assert!(m("#.b", "x.a.b"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.c"));
        assert!(m("a.#.c", "a.c"));
        assert!(m("a.#.c", "a.x.y.c"));
        assert!(!m("a.#.c", "a.x.y.c.d"));
        assert!(m("#.#", "a"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.bc"));
        assert!(!m("sample", "samples"));
        assert!(m("#.x.#", "a.x.b"));
        assert!(!m("#.x.#", "a.y.b"));
    }

    #[test]
    fn invalid_keys_and_patterns_say_why() {
        assert!(RoutingKey::new("").is_err());
        assert!(RoutingKey::new("a..b").unwrap_err().contains("empty"));
        assert!(RoutingKey::new("a.*").unwrap_err().contains("wildcards"));
        assert!(RoutingKey::new("a b").is_err());
        assert!(RoutingKey::new(&"a".repeat(256)).is_err());
        assert!(Pattern::new("a.b*").unwrap_err().contains("wildcard"));
        assert!(Pattern::new(".a").is_err());
        assert!(Pattern::new("").is_err());
        assert!(Pattern::new("(a|b)").is_err());
    }

    #[test]
    fn prefixes_and_literals() {
        let p = Pattern::new("a.b.*.c").expect("valid");
        assert_eq!(p.literal_prefix(), "a.b");
        assert_eq!(p.literal(), None);
        assert_eq!(Pattern::new("#.c").expect("valid").literal_prefix(), "");
        assert_eq!(Pattern::new("a.c").expect("valid").literal(), Some("a.c"));
        assert!(Pattern::new("#.#").expect("valid").is_all());
    }

    #[test]
    fn keys_from_names() {
        assert_eq!(
            RoutingKey::from_words(["hub1", "my channel", "refr"]).as_str(),
            "hub1.my_channel.refr"
        );
        assert_eq!(RoutingKey::from_words(["", "x"]).as_str(), "_.x");
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("ab")].prop_map(str::to_owned)
    }

    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_owned()), Just("#".to_owned())]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn matcher_agrees_with_the_naive_reference(
            pattern in prop::collection::vec(pattern_word(), 1..7),
            key in prop::collection::vec(word(), 1..8),
        ) {
            let p = Pattern::new(&pattern.join(".")).expect("generated patterns are valid");
            let k = RoutingKey::new(&key.join(".")).expect("generated keys are valid");
            let parts: Vec<&str> = pattern.iter().map(String::as_str).collect();
            let words: Vec<&str> = key.iter().map(String::as_str).collect();
            prop_assert_eq!(p.matches(&k), naive(&parts, &words));
            // Every match starts with the literal prefix.
            if p.matches(&k) {
                let prefix = p.literal_prefix();
                let dotted = format!("{}.", prefix);
                let ok = prefix.is_empty() || k.as_str() == prefix || k.as_str().starts_with(&dotted);
                prop_assert!(ok);
            }
        }
    }
}
