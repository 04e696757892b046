//! Row-filter conditions (`Restrict` `RefreshCondition`, `CompareCondition`): SQL that sluice
//! places inside `WHERE ( … )` of statements it builds (sluice-model `condition`).
//!
//! The input is a condition; NUL bytes (never part of a condition) also split it into the parts of
//! a `Condition::all`. Never a panic, and the property that matters: what sluice sends to a
//! database for an accepted condition (`Condition::sql`) cannot get out of its parentheses there.
//! Each database's own lexing is written out below (its quotes, escapes and comments, independent
//! of the parser under test); read that way, the SQL sent has no statement separator, no comment,
//! no NUL, no quote left open, no parenthesis closed that it did not open, and no call of a
//! function of `DENIED_FUNCTIONS`. Also: `new` accepts what some dialect's `parse` accepts, and
//! the SQL sent (without backslashes) is its own rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_model::Condition;
use sluice_model::condition::{DENIED_FUNCTIONS, SqlDialect};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut accepted_somewhere = false;
    for dialect in SqlDialect::ALL {
        let Ok(condition) = Condition::parse(text, dialect) else {
            continue;
        };
        accepted_somewhere = true;
        let sql = condition
            .sql(dialect)
            .expect("a condition parsed for a dialect renders for it");
        check_sent(text, &sql, dialect);
        if sql.contains('\\') {
            // Rendering writes control characters of a PostgreSQL E'…' string as escapes; typed
            // conditions may not hold backslashes, so the SQL sent is not one to type.
            continue;
        }
        let again = Condition::parse(sql.as_ref(), dialect)
            .unwrap_or_else(|e| panic!("the SQL sent for {text:?} is refused: {e}"));
        assert_eq!(
            again.sql(dialect).expect("parsed").as_ref(),
            sql.as_ref(),
            "the SQL sent is not its own rendering"
        );
    }
    match Condition::new(text) {
        Ok(condition) => {
            assert!(accepted_somewhere, "new accepts what no dialect parses");
            for dialect in SqlDialect::ALL {
                if let Ok(sql) = condition.sql(dialect) {
                    check_sent(text, &sql, dialect);
                }
            }
        }
        Err(_) => assert!(!accepted_somewhere, "new refuses what a dialect parses"),
    }
    let parts: Vec<&str> = text.split('\0').collect();
    if parts.len() > 1 {
        for dialect in SqlDialect::ALL {
            if let Ok(Some(all)) = Condition::all(&parts, dialect) {
                let sql = all.sql(dialect).expect("a combined condition renders");
                check_sent(text, &sql, dialect);
            }
        }
    }
});

fn check_sent(text: &str, sql: &str, dialect: SqlDialect) {
    let lexer = match dialect {
        SqlDialect::Postgresql => Lexer::Postgres,
        SqlDialect::Mariadb => Lexer::MariaDb,
        SqlDialect::Sqlite => Lexer::Sqlite,
    };
    let tokens = lex(sql, lexer)
        .unwrap_or_else(|why| panic!("{text:?} is sent to {dialect} as {sql:?}, which {why}"));
    for pair in tokens.windows(2) {
        if let [Token::Name(name), Token::Open] = pair {
            let name = name.to_ascii_lowercase();
            assert!(
                !DENIED_FUNCTIONS.contains(&name.as_str()),
                "{text:?} is sent to {dialect} as {sql:?}, which calls {name}()"
            );
        }
    }
}

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

/// A character that continues a word (identifiers, keywords, numbers; PostgreSQL allows `$` in
/// identifiers).
fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// What the lexer sees outside string literals, as far as the checks need it.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A bare word or a quoted identifier (without its quotes).
    Name(String),
    /// `(`.
    Open,
    /// Anything else.
    Other,
}

/// Reads `text` as `lexer` does. Refuses, saying why, what could get out of `WHERE ( … )`: a
/// statement separator, a comment, a NUL (SQLite stops reading there), a quote left open or a
/// parenthesis closed that the text did not open.
fn lex(text: &str, lexer: Lexer) -> Result<Vec<Token>, &'static str> {
    let s: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
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
                if backslash && lexer == Lexer::Postgres {
                    tokens.pop(); // the E was not a word
                }
                i = skip_quoted(&s, i, '\'', backslash)?;
                tokens.push(Token::Other);
            }
            // A string in MariaDB, an identifier in the others.
            '"' if lexer == Lexer::MariaDb => {
                i = skip_quoted(&s, i, '"', true)?;
                tokens.push(Token::Other);
            }
            '"' | '`' if c == '"' || lexer != Lexer::Postgres => {
                let end = skip_quoted(&s, i, c, false)?;
                let name: String = s[i + 1..end - 1].iter().collect();
                let doubled: String = [c, c].iter().collect();
                tokens.push(Token::Name(name.replace(&doubled, &c.to_string())));
                i = end;
            }
            '[' if lexer == Lexer::Sqlite => {
                let close = i
                    + 1
                    + s[i + 1..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or("leaves a [ identifier open")?;
                tokens.push(Token::Name(s[i + 1..close].iter().collect()));
                i = close + 1;
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
                tokens.push(Token::Other);
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
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("closes a parenthesis it did not open");
                }
                tokens.push(Token::Other);
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            c if ident_char(c) => {
                let len = s[i..].iter().take_while(|&&c| ident_char(c)).count();
                tokens.push(Token::Name(s[i..i + len].iter().collect()));
                i += len;
            }
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    if depth == 0 {
        Ok(tokens)
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
