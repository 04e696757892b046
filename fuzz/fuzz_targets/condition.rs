//! Row-filter conditions (`Restrict` `RefreshCondition`, `CompareCondition`): SQL that sluice
//! places inside `WHERE ( … )` of statements it builds.
//!
//! Never a panic, and the property that matters: a condition that is accepted cannot get out of
//! its parentheses in any of the three dialects. Each dialect's own lexing is written out below
//! (its quotes, escapes and comments, independent of the code under test); read that way, an
//! accepted condition has no statement separator, no comment, no NUL, no quote left open and no
//! parenthesis closed that it did not open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_model::Condition;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(condition) = Condition::new(text) else {
        return;
    };
    for lexer in LEXERS {
        if let Err(why) = way_out(condition.as_str(), lexer) {
            panic!("accepted condition {text:?} {why} when {lexer:?} reads it");
        }
    }
});

/// The three SQL dialects a condition may run in, as their own lexers read text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexer {
    /// `'…'` strings (standard_conforming_strings on), `E'…'` with backslash escapes, `"…"`
    /// identifiers, `$tag$…$tag$` strings.
    Postgres,
    /// `'…'` and `"…"` strings with backslash escapes, `` `…` `` identifiers, `#` comments.
    MariaDb,
    /// `'…'` strings, `"…"`, `` `…` `` and `[…]` identifiers.
    Sqlite,
}

const LEXERS: [Lexer; 3] = [Lexer::Postgres, Lexer::MariaDb, Lexer::Sqlite];

/// A character that continues a word (identifiers, keywords, numbers; PostgreSQL allows `$` in
/// identifiers).
fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// How `text`, placed inside `WHERE ( … )`, could get out of it when `lexer` reads it: a statement
/// separator, a comment, a NUL (SQLite stops reading there), a quote left open or a parenthesis
/// closed that the text did not open. `Ok` when it cannot.
fn way_out(text: &str, lexer: Lexer) -> Result<(), &'static str> {
    let s: Vec<char> = text.chars().collect();
    let mut depth = 0i64;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let prev = i.checked_sub(1).map(|p| s[p]);
        let next = s.get(i + 1).copied();
        match c {
            '\'' => {
                let backslash = match lexer {
                    Lexer::MariaDb => true,
                    // E'…' (or e'…') when the E is not the end of a longer word (after a
                    // digit too: PostgreSQL before 15 reads `1E'…'` as 1 and an E string).
                    Lexer::Postgres => {
                        matches!(prev, Some('E' | 'e'))
                            && !i
                                .checked_sub(2)
                                .is_some_and(|p| ident_char(s[p]) && !s[p].is_ascii_digit())
                    }
                    Lexer::Sqlite => false,
                };
                i = skip_quoted(&s, i, '\'', backslash)?;
            }
            '"' => i = skip_quoted(&s, i, '"', lexer == Lexer::MariaDb)?,
            '`' if lexer != Lexer::Postgres => i = skip_quoted(&s, i, '`', false)?,
            '[' if lexer == Lexer::Sqlite => {
                let close = s[i + 1..].iter().position(|&c| c == ']');
                i += 2 + close.ok_or("leaves a [ identifier open")?;
            }
            '$' if lexer == Lexer::Postgres && !prev.is_some_and(ident_char) => {
                // $tag$: the tag is ASCII letters, digits (not first), `_` and any non-ASCII
                // character (PostgreSQL's dolq_start and dolq_cont).
                let tag_len = s[i + 1..]
                    .iter()
                    .take_while(|&&c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
                    .count();
                let starts_ok = tag_len == 0 || !s[i + 1].is_ascii_digit();
                if starts_ok && s.get(i + 1 + tag_len) == Some(&'$') {
                    let tag = &s[i..i + tag_len + 2];
                    let body = i + tag.len();
                    let end = (body..=s.len().saturating_sub(tag.len()))
                        .find(|&j| &s[j..j + tag.len()] == tag)
                        .ok_or("leaves a $tag$ string open")?;
                    i = end + tag.len();
                } else {
                    i += 1;
                }
            }
            ';' => return Err("has a statement separator"),
            // MariaDB reads `--` as a comment only before a blank, a control character or the
            // end; `a--1` is `a - -1` there.
            '-' if next == Some('-')
                && (lexer != Lexer::MariaDb
                    || s.get(i + 2)
                        .is_none_or(|&c| c.is_whitespace() || c.is_control())) =>
            {
                return Err("has a -- comment");
            }
            '/' if next == Some('*') => return Err("has a /* comment"),
            '#' if lexer == Lexer::MariaDb => return Err("has a # comment"),
            '\0' => return Err("has a NUL"),
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open");
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err("leaves a parenthesis open")
    }
}

/// Skips the quoted token opening at `s[at]`, where a doubled quote stands for itself and, with
/// `backslash`, a backslash escapes the next character. Returns the index after it.
fn skip_quoted(s: &[char], at: usize, quote: char, backslash: bool) -> Result<usize, &'static str> {
    let mut i = at + 1;
    loop {
        match s.get(i) {
            None => return Err("leaves a quote open"),
            Some('\\') if backslash => i += 2,
            Some(&c) if c == quote => {
                if s.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}
