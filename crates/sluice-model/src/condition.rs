//! Row filters (`Restrict` `RefreshCondition`, `CompareCondition`): one SQL boolean expression.
//!
//! A condition is SQL written by someone allowed to define channels, and it is placed inside a
//! `WHERE ( … )` of a statement sluice builds. The check here makes sure it stays one expression:
//! quotes and parentheses balance, and there is no statement separator or comment outside quotes, so
//! a condition can never end sluice's statement and start another.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated SQL boolean expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Condition(String);

/// Text that is not a single expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition {text:?} {reason}")]
pub struct ConditionError {
    text: String,
    reason: &'static str,
}

impl Condition {
    /// Checks `text` and wraps it.
    pub fn new(text: impl Into<String>) -> Result<Self, ConditionError> {
        let text = text.into();
        let fail = |reason| ConditionError {
            text: text.clone(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(fail("is empty"));
        }
        if text.len() > 4000 {
            return Err(fail("is longer than 4000 bytes"));
        }
        if text.contains('\\') {
            // MariaDB reads a backslash inside a string as an escape, PostgreSQL does not; a quote
            // check that agrees with both is only possible without backslashes.
            return Err(fail("contains a backslash"));
        }
        let mut depth = 0i32;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' | '`' => {
                    // A quoted string or identifier; a doubled quote escapes itself.
                    loop {
                        match chars.next() {
                            None => return Err(fail("has an unterminated quote")),
                            Some(q) if q == c => {
                                if chars.peek() == Some(&c) {
                                    chars.next();
                                } else {
                                    break;
                                }
                            }
                            Some(_) => {}
                        }
                    }
                }
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(fail("closes a parenthesis it never opened"));
                    }
                }
                ';' => return Err(fail("contains ';' (only one expression is allowed)")),
                '-' if chars.peek() == Some(&'-') => {
                    return Err(fail("contains a comment (--)"));
                }
                '/' if chars.peek() == Some(&'*') => {
                    return Err(fail("contains a comment (/*)"));
                }
                '#' => return Err(fail("contains '#' (a comment in MariaDB)")),
                c if c.is_control() && !c.is_whitespace() => {
                    return Err(fail("contains a control character"));
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(fail("has unbalanced parentheses"));
        }
        Ok(Condition(text))
    }

    /// The expression text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Condition::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_expressions_pass() {
        for ok in [
            "status <> 'cancelled'",
            "created_at >= '2024-01-01' AND (qty > 0 OR note = 'it''s; fine -- really')",
            "\"Order Date\" IS NOT NULL",
            "`weird``name` = 1",
            "price / 2 > 10",
        ] {
            assert!(Condition::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn attempts_to_escape_the_expression_fail() {
        for bad in [
            "1=1; DROP TABLE orders",
            "1=1 -- and the rest",
            "1=1 /* x */",
            "name = 'unterminated",
            "(a = 1",
            "a = 1)",
            "a = 1 # mariadb comment",
            "a = '\\'' OR 1=1",
            "a = '\\'' ; drop table x; -- '",
            "",
        ] {
            assert!(Condition::new(bad).is_err(), "{bad}");
        }
    }
}
