//! Row filters (`Restrict` `RefreshCondition`, `CompareCondition`): one SQL boolean expression.
//!
//! A condition is SQL written by someone allowed to define channels, placed inside a
//! `WHERE ( … )` of a statement sluice builds. It must never end that statement and start another,
//! nor hide text from the parser that reads it. So a condition is not checked by scanning quotes by
//! hand: it is tokenised and parsed by a real SQL parser (`sqlparser`) **in the dialect of the
//! database that runs it**, must be exactly one expression with nothing after it, and sluice sends
//! the expression as the parser understood it (rendered back from the syntax tree, and checked to
//! parse back to the same tree), never the text as typed. Whatever bracket, backtick or
//! dollar-quoted string a dialect knows is therefore read the way that database reads it.
//!
//! Refused outright: statement separators, comments (MariaDB runs `/*! … */` comments), backslashes
//! (MariaDB reads them as escapes inside strings, PostgreSQL does not), control characters,
//! placeholders, server variables (`@x`, `@@datadir`), statements nested in the expression
//! (`(DELETE … RETURNING …)`, `SELECT … INTO`), locking clauses, functions in a FROM clause, and
//! any function that is not on a list of ordinary scalar and aggregate functions
//! ([`ALLOWED_FUNCTIONS`]: text, numbers, dates, null handling): what could reach the database
//! server's files, other servers, sessions, or run SQL given as text (`query_to_xml`, `ts_stat`)
//! is not on it ([`DENIED_FUNCTIONS`] names the best-known of those, for tests). Subqueries over
//! tables are allowed: a condition runs with the location's database user and can read what that
//! user can read.
//!
//! The statements that carry a condition are also run as single prepared statements by the
//! connectors, so even a parser disagreement could not run a second statement.

use std::borrow::Cow;
use std::fmt;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, TableFactor, Value as SqlValue, Visit, Visitor,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// The longest condition accepted, in bytes.
pub const MAX_CONDITION_LEN: usize = 4000;

/// How deep expressions may nest.
const RECURSION_LIMIT: usize = 40;

/// The functions a condition may call (compared case-insensitively; unqualified, or qualified by
/// PostgreSQL's `pg_catalog`): ordinary text, number, date and null-handling functions of the three
/// dialects, and aggregates for subqueries. Syntax such as `CAST`, `EXTRACT`, `SUBSTRING … FROM`,
/// `POSITION`, `TRIM`, `CASE`, `COALESCE` is not a function call and needs no entry.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "truncate",
    "mod",
    "power",
    "pow",
    "sqrt",
    "sign",
    "exp",
    "ln",
    "log",
    "log10",
    "greatest",
    "least",
    "random",
    // null handling and choice
    "coalesce",
    "nullif",
    "ifnull",
    "if",
    "iif",
    "nvl",
    // text
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "lower",
    "upper",
    "lcase",
    "ucase",
    "trim",
    "ltrim",
    "rtrim",
    "btrim",
    "substr",
    "substring",
    "left",
    "right",
    "replace",
    "concat",
    "concat_ws",
    "lpad",
    "rpad",
    "position",
    "strpos",
    "instr",
    "locate",
    "reverse",
    "repeat",
    "initcap",
    "split_part",
    "ascii",
    "chr",
    "char",
    "unicode",
    "hex",
    "md5",
    "starts_with",
    "regexp_like",
    "regexp_replace",
    "regexp_substr",
    "regexp_instr",
    "regexp_count",
    "format",
    "typeof",
    "glob",
    "like",
    // dates and times
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "date_trunc",
    "date_part",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "date_add",
    "date_sub",
    "adddate",
    "subdate",
    "datediff",
    "timestampdiff",
    "timestampadd",
    "curdate",
    "curtime",
    "sysdate",
    "year",
    "month",
    "day",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "hour",
    "minute",
    "second",
    "week",
    "weekday",
    "weekofyear",
    "quarter",
    "last_day",
    "str_to_date",
    "date_format",
    "from_unixtime",
    "unix_timestamp",
    "utc_timestamp",
    "utc_date",
    "utc_time",
    "from_days",
    "to_days",
    "makedate",
    "isfinite",
    // JSON values
    "json_extract",
    "json_value",
    "json_unquote",
    "json_contains",
    "json_length",
    "json_type",
    "json_extract_path_text",
    "jsonb_extract_path_text",
    "json_array_length",
    "jsonb_array_length",
    "jsonb_typeof",
    "json_typeof",
    // aggregates (in subqueries)
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "bool_and",
    "bool_or",
    "every",
];

/// Functions that reach the database server's files, other servers or sessions, sleep, or run SQL
/// given as text: none is on [`ALLOWED_FUNCTIONS`]; the list names the best-known of them for the
/// tests and the fuzz target.
pub const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "lo_from_bytea",
    "lo_put",
    "pg_file_write",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "set_config",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "database_to_xml",
    "ts_stat",
    "setval",
    "nextval",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_logical_emit_message",
    "pg_switch_wal",
    // MariaDB
    "load_file",
    "sleep",
    "benchmark",
    "get_lock",
    "sys_exec",
    "sys_eval",
    // SQLite
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// The SQL dialect a condition is read in: the class of the location that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlDialect {
    /// PostgreSQL.
    Postgresql,
    /// MariaDB (and MySQL).
    Mariadb,
    /// SQLite.
    Sqlite,
}

impl SqlDialect {
    /// Every dialect.
    pub const ALL: [SqlDialect; 3] = [
        SqlDialect::Postgresql,
        SqlDialect::Mariadb,
        SqlDialect::Sqlite,
    ];

    /// The dialect's name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SqlDialect::Postgresql => "postgresql",
            SqlDialect::Mariadb => "mariadb",
            SqlDialect::Sqlite => "sqlite",
        }
    }

    fn parser_dialect(self) -> &'static dyn Dialect {
        match self {
            SqlDialect::Postgresql => &PostgreSqlDialect {},
            SqlDialect::Mariadb => &MySqlDialect {},
            SqlDialect::Sqlite => &SQLiteDialect {},
        }
    }
}

impl fmt::Display for SqlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated SQL boolean expression.
///
/// Made by [`Condition::new`] (the text is one expression in at least one dialect: what a
/// definition can check before it knows where the condition runs) or [`Condition::parse`] (one
/// expression in the given dialect, rendered for it). Connectors take the SQL to send from
/// [`Condition::sql`], which parses the text again in their own dialect when needed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Condition {
    text: String,
    rendered: Option<Box<(SqlDialect, String)>>,
}

/// Text that is not a single safe expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition {text:?} {reason}")]
pub struct ConditionError {
    text: String,
    reason: String,
}

impl ConditionError {
    /// Why the text was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Condition {
    /// Checks that `text` is one safe expression in at least one dialect sluice speaks; the
    /// dialect that runs it checks again ([`Condition::sql`]).
    pub fn new(text: impl Into<String>) -> Result<Self, ConditionError> {
        let text = text.into();
        let mut first_error = None;
        for dialect in SqlDialect::ALL {
            match render(&text, dialect) {
                Ok(_) => {
                    return Ok(Condition {
                        text,
                        rendered: None,
                    });
                }
                Err(reason) => {
                    first_error.get_or_insert(reason);
                }
            }
        }
        Err(ConditionError {
            reason: first_error.unwrap_or_else(|| "is not an expression".into()),
            text,
        })
    }

    /// Checks that `text` is one safe expression in `dialect`.
    pub fn parse(text: impl Into<String>, dialect: SqlDialect) -> Result<Self, ConditionError> {
        let text = text.into();
        match render(&text, dialect) {
            Ok(sql) => Ok(Condition {
                text,
                rendered: Some(Box::new((dialect, sql))),
            }),
            Err(reason) => Err(ConditionError { text, reason }),
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The SQL to send to a database of `dialect`: the expression parsed in that dialect and
    /// rendered back from its syntax tree. Fails when the text is not one safe expression there.
    pub fn sql(&self, dialect: SqlDialect) -> Result<Cow<'_, str>, ConditionError> {
        match self.rendered.as_deref() {
            Some((d, sql)) if *d == dialect => Ok(Cow::Borrowed(sql)),
            _ => render(&self.text, dialect)
                .map(Cow::Owned)
                .map_err(|reason| ConditionError {
                    text: self.text.clone(),
                    reason,
                }),
        }
    }

    /// `(a) AND (b) AND …` of several conditions, checked in `dialect`.
    pub fn all(
        parts: &[impl AsRef<str>],
        dialect: SqlDialect,
    ) -> Result<Option<Self>, ConditionError> {
        match parts {
            [] => Ok(None),
            [one] => Self::parse(one.as_ref(), dialect).map(Some),
            many => {
                // Each part alone first, so an error names the part that is wrong.
                for part in many {
                    Self::parse(part.as_ref(), dialect)?;
                }
                let joined = many
                    .iter()
                    .map(|p| format!("({})", p.as_ref()))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                Self::parse(joined, dialect).map(Some)
            }
        }
    }
}

/// Parses `text` as one expression in `dialect` and renders it back; the reason when it is not one
/// safe expression.
fn render(text: &str, dialect: SqlDialect) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if text.len() > MAX_CONDITION_LEN {
        return Err(format!("is longer than {MAX_CONDITION_LEN} bytes"));
    }
    if text.contains('\\') {
        // MariaDB reads a backslash inside a string as an escape, PostgreSQL and SQLite do not.
        return Err("contains a backslash".into());
    }
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err("contains a control character".into());
    }
    let expr = parse_one(text, dialect)?;
    check_tree(&expr)?;
    let sql = expr.to_string();
    // What is sent must read back as the same tree: a renderer quirk must not change meaning.
    let again = parse_one(&sql, dialect)
        .map_err(|reason| format!("cannot be rendered safely for {dialect} ({reason})"))?;
    if again != expr {
        return Err(format!("cannot be rendered safely for {dialect}"));
    }
    Ok(sql)
}

fn parse_one(text: &str, dialect: SqlDialect) -> Result<Expr, String> {
    let parser_dialect = dialect.parser_dialect();
    let tokens = Tokenizer::new(parser_dialect, text)
        .tokenize_with_location()
        .map_err(|e| format!("is not valid {dialect} SQL: {}", e.message))?;
    for token in &tokens {
        match &token.token {
            Token::SemiColon => return Err("contains ';' (only one expression is allowed)".into()),
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => {
                return Err("contains a comment".into());
            }
            Token::Placeholder(p) => {
                return Err(format!("contains a placeholder ({p})"));
            }
            // sqlparser (MariaDB's dialect) takes `@` and any character after it for the start
            // of a word; MariaDB reads `@#` as `@` and a comment, `@;` as `@` and a separator.
            Token::Word(w)
                if w.quote_style.is_none()
                    && !w.value.chars().all(|c| {
                        c.is_alphanumeric() || matches!(c, '_' | '$' | '@') || !c.is_ascii()
                    }) =>
            {
                return Err(format!(
                    "contains the word {:?}, which {dialect} reads otherwise",
                    w.value
                ));
            }
            // PostgreSQL's dollar-quote tag follows identifier rules; `$1a$` is a parameter and
            // a word there, not the start of a string.
            Token::DollarQuotedString(d)
                if d.tag.as_deref().is_some_and(|tag| {
                    tag.starts_with(|c: char| c.is_ascii_digit())
                        || !tag.chars().all(|c| c.is_alphanumeric() || c == '_')
                }) =>
            {
                return Err(format!(
                    "contains the dollar tag ${}$, which {dialect} does not read as a tag",
                    d.tag.as_deref().unwrap_or_default()
                ));
            }
            // sqlparser takes a run of operator characters for one operator; PostgreSQL ends the
            // operator where `/*` or `--` starts a comment.
            Token::CustomBinaryOperator(op) if op.contains("/*") || op.contains("--") => {
                return Err(format!(
                    "contains the operator {op}, which holds a comment start"
                ));
            }
            _ => {}
        }
    }
    let mut parser = Parser::new(parser_dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let expr = parser
        .parse_expr()
        .map_err(|e| format!("is not one {dialect} expression: {}", parser_message(&e)))?;
    let next = parser.next_token();
    if next.token != Token::EOF {
        return Err(format!(
            "is not one {dialect} expression: unexpected {} after it",
            next.token
        ));
    }
    Ok(expr)
}

fn parser_message(e: &sqlparser::parser::ParserError) -> String {
    use sqlparser::parser::ParserError;
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "it nests too deeply".into(),
    }
}

/// Refuses nested statements, writing queries, placeholders, server variables, functions in FROM
/// and functions not on the allowed list anywhere in the tree.
fn check_tree(expr: &Expr) -> Result<(), String> {
    struct Check;
    impl Visitor for Check {
        type Break = String;

        fn pre_visit_statement(&mut self, _: &Statement) -> ControlFlow<String> {
            ControlFlow::Break("contains a statement".into())
        }

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
            if !reads_only(&query.body) {
                return ControlFlow::Break("contains a query that is not a plain SELECT".into());
            }
            if let SetExpr::Select(select) = query.body.as_ref()
                && select.into.is_some()
            {
                return ControlFlow::Break("contains SELECT … INTO".into());
            }
            if query.locks.iter().len() > 0 {
                return ControlFlow::Break("contains a locking clause (FOR UPDATE/SHARE)".into());
            }
            ControlFlow::Continue(())
        }

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
            // FROM may name tables and subqueries; a function there (`FROM pg_read_file(…)`,
            // `FROM pragma_database_list`, `UNNEST`, `JSON_TABLE`, …) is refused.
            match factor {
                TableFactor::Table {
                    name, args: None, ..
                } => {
                    if name.0.iter().any(|p| {
                        p.as_ident()
                            .is_some_and(|i| i.value.to_ascii_lowercase().starts_with("pragma_"))
                    }) {
                        ControlFlow::Break(format!(
                            "reads {name}, a SQLite pragma function, which is not allowed"
                        ))
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                    ControlFlow::Continue(())
                }
                TableFactor::Table { name, .. } | TableFactor::Function { name, .. } => {
                    ControlFlow::Break(format!(
                        "calls {name}() in FROM; a condition's subqueries may read tables only"
                    ))
                }
                other => ControlFlow::Break(format!(
                    "reads {other} in FROM; a condition's subqueries may read tables only"
                )),
            }
        }

        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
            match expr {
                Expr::Function(f) => allowed(&f.name)?,
                Expr::Value(v) if matches!(v.value, SqlValue::Placeholder(_)) => {
                    return ControlFlow::Break("contains a placeholder".into());
                }
                Expr::Identifier(i) if i.quote_style.is_none() && i.value.starts_with('@') => {
                    return ControlFlow::Break(format!(
                        "reads the server variable {}, which is not allowed",
                        i.value
                    ));
                }
                Expr::CompoundIdentifier(parts)
                    if parts
                        .first()
                        .is_some_and(|i| i.quote_style.is_none() && i.value.starts_with('@')) =>
                {
                    return ControlFlow::Break(
                        "reads a server variable, which is not allowed".into(),
                    );
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    match expr.visit(&mut Check) {
        ControlFlow::Break(reason) => Err(reason),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether `name` is a function a condition may call (see [`is_allowed_function`]).
fn allowed(name: &ObjectName) -> ControlFlow<String> {
    let parts: Vec<Option<&str>> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect();
    let plain = match parts.as_slice() {
        [Some(f)] => Some(*f),
        [Some(schema), Some(f)] if schema.eq_ignore_ascii_case("pg_catalog") => Some(*f),
        _ => None,
    };
    match plain {
        Some(f) if is_allowed_function(f) => ControlFlow::Continue(()),
        _ => ControlFlow::Break(format!(
            "calls {name}(), which is not among the functions a condition may call"
        )),
    }
}

/// Whether a condition may call the function `name` (case-insensitively).
pub fn is_allowed_function(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ALLOWED_FUNCTIONS.contains(&name.as_str())
}

fn reads_only(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => true,
        SetExpr::Query(q) => reads_only(&q.body),
        SetExpr::SetOperation { left, right, .. } => reads_only(left) && reads_only(right),
        _ => false,
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
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
    use proptest::prelude::*;

    fn refused_everywhere(text: &str) {
        for d in SqlDialect::ALL {
            assert!(
                Condition::parse(text, d).is_err(),
                "{d} accepted {text:?} as {:?}",
                Condition::parse(text, d).map(|c| c.sql(d).map(|s| s.into_owned()))
            );
        }
        assert!(Condition::new(text).is_err(), "{text:?}");
    }

    #[test]
    fn single_expressions_pass_and_render_for_their_dialect() {
        for (ok, dialects) in [
            ("status <> 'cancelled'", &SqlDialect::ALL[..]),
            (
                "created_at >= '2024-01-01' AND (qty > 0 OR note = 'it''s; fine -- really')",
                &SqlDialect::ALL[..],
            ),
            ("\"Order Date\" IS NOT NULL", &SqlDialect::ALL[..]),
            (
                "`weird``name` = 1",
                &[SqlDialect::Mariadb, SqlDialect::Sqlite][..],
            ),
            ("price / 2 > 10", &SqlDialect::ALL[..]),
            (
                "id IN (SELECT id FROM active WHERE flag = 1)",
                &SqlDialect::ALL[..],
            ),
            (
                "created_at::date > '2024-01-01'",
                &[SqlDialect::Postgresql][..],
            ),
            ("[odd name] = 1", &[SqlDialect::Sqlite][..]),
        ] {
            for d in dialects {
                let c = Condition::parse(ok, *d).unwrap_or_else(|e| panic!("{d}: {e}"));
                let sql = c.sql(*d).unwrap();
                assert!(parse_one(&sql, *d).is_ok(), "{sql}");
            }
            assert!(Condition::new(ok).is_ok(), "{ok}");
        }
        let c = Condition::parse("note = 'it''s; fine -- really'", SqlDialect::Postgresql).unwrap();
        assert_eq!(
            c.sql(SqlDialect::Postgresql).unwrap(),
            "note = 'it''s; fine -- really'"
        );
    }

    #[test]
    fn attempts_to_escape_the_expression_fail() {
        for bad in [
            "1=1; DROP TABLE orders",
            "1=1 -- and the rest",
            "1=1 /* x */",
            "1=1 /*! ; drop table x */",
            "name = 'unterminated",
            "(a = 1",
            "a = 1)",
            "a = 1 # mariadb comment",
            "a = '\\'' OR 1=1",
            "a = '\\'' ; drop table x; -- '",
            "",
            "   ",
            "a = 1 b = 2",
            "a = ?",
        ] {
            refused_everywhere(bad);
        }
        assert!(Condition::parse("a = $1", SqlDialect::Postgresql).is_err());
    }

    #[test]
    fn the_known_bypasses_are_refused_in_the_dialect_that_runs_them() {
        // SQLite reads [...] as an identifier: the quote inside is not a quote.
        let bracket = "1 IN (SELECT 1 AS [']) ); DROP TABLE victim; SELECT ((SELECT 1 AS ['])";
        refused_everywhere(bracket);
        // PostgreSQL dollar-quoted strings hide quotes from a scanner that only knows '.
        for bad in [
            "x = $$'$$ ); DROP TABLE victim; SELECT ($$'$$",
            "x = $t$'$t$); DROP TABLE victim; --",
            "x = $$ $$ OR 1 = (SELECT 1); DROP TABLE victim",
        ] {
            assert!(
                Condition::parse(bad, SqlDialect::Postgresql).is_err(),
                "{bad}"
            );
            refused_everywhere(bad);
        }
        // Backtick identifiers in MariaDB.
        refused_everywhere("`a'` = 1); DROP TABLE victim; SELECT (`a'`");
        // A dollar string on its own is a harmless literal in PostgreSQL.
        let c = Condition::parse("note <> $$it's$$", SqlDialect::Postgresql).unwrap();
        assert!(!c.sql(SqlDialect::Postgresql).unwrap().contains(';'));
    }

    #[test]
    fn nested_statements_and_server_functions_are_refused() {
        for bad in [
            "id IN (WITH d AS (DELETE FROM victim RETURNING id) SELECT id FROM d)",
            "pg_read_file('/etc/passwd') <> ''",
            "LOAD_FILE('/etc/passwd') IS NOT NULL",
            "load_extension('x') IS NULL",
            "public.PG_SLEEP(10) IS NULL",
            "id IN (SELECT id FROM t FOR UPDATE)",
        ] {
            refused_everywhere(bad);
        }
    }

    /// Found by the `condition` fuzz target: sqlparser reads a run of PostgreSQL operator
    /// characters as one operator even when it holds `/*` or `--`, which PostgreSQL reads as the
    /// start of a comment. Text sqlparser took for a string literal then reached the server as SQL
    /// (here a call of a denied function, and a comment hiding the rest of sluice's statement).
    #[test]
    fn operators_holding_a_comment_start_are_refused() {
        for bad in [
            "x ~~>>=/* s <<< y",
            "name ~~/* '*/ name OR pg_sleep(10) IS NULL) --'",
            "a @-- b",
        ] {
            assert!(
                Condition::parse(bad, SqlDialect::Postgresql).is_err(),
                "{bad}"
            );
        }
        for ok in ["a ~~ 'x%'", "a - -1 > 0", "a <-> b < 1", "a ~~*/ b"] {
            Condition::parse(ok, SqlDialect::Postgresql).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Found by the `condition` fuzz target: sqlparser takes `$1a$…$1a$` for a dollar-quoted
    /// string, PostgreSQL reads a tag that starts with a digit as no tag at all (`$1` is a
    /// parameter), so the text inside would reach the server as SQL.
    #[test]
    fn dollar_tags_postgresql_does_not_read_as_tags_are_refused() {
        for bad in [
            "x = $1a$) OR pg_sleep(10) IS NULL OR (1 = $1a$",
            "x = $9$ $9$",
            "x = $a-b$ $a-b$",
        ] {
            assert!(
                Condition::parse(bad, SqlDialect::Postgresql).is_err(),
                "{bad}"
            );
        }
        for ok in ["x = $a1$ y $a1$", "x = $_$ y $_$", "x = $$ y $$"] {
            Condition::parse(ok, SqlDialect::Postgresql).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    /// Found by the `condition` fuzz target: in MariaDB's dialect sqlparser reads `@` and the
    /// character after it as the start of a word, whatever that character is; MariaDB reads
    /// `@#…` as `@` and a comment to the end of the line, and `@;` as `@` and a separator.
    #[test]
    fn words_holding_what_mariadb_reads_otherwise_are_refused() {
        for bad in [
            "B = 1 / ag ~* @#4Tc * c = d",
            "a = @#x",
            "a = @;",
            "a = @-x",
            "a = @#\n OR 1 = 1",
        ] {
            assert!(Condition::parse(bad, SqlDialect::Mariadb).is_err(), "{bad}");
        }
        Condition::parse("a$b = 1", SqlDialect::Mariadb).unwrap_or_else(|e| panic!("{e}"));
        // Server and user variables are words to sqlparser, and refused as variables.
        for variable in ["a = @x", "a = @@version", "@@datadir IS NOT NULL"] {
            let e = Condition::parse(variable, SqlDialect::Mariadb).unwrap_err();
            assert!(e.reason().contains("variable"), "{variable}: {e}");
        }
    }

    /// Found by a review of the API as an attacker: only ordinary functions may be called, and
    /// none in FROM, so a condition can neither reach the server's files nor run SQL given as text.
    #[test]
    fn only_ordinary_functions_may_be_called() {
        for ok in [
            "lower(name) LIKE 'a%' AND coalesce(qty, 0) > 0",
            "created_at >= date_trunc('day', now()) - INTERVAL '7 days'",
            "pg_catalog.upper(code) = 'X'",
            "id IN (SELECT max(id) FROM orders GROUP BY customer)",
            "CAST(total AS INTEGER) > 10 AND EXTRACT(YEAR FROM created_at) = 2024",
        ] {
            Condition::parse(ok, SqlDialect::Postgresql).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "id = (SELECT CAST(c AS int) FROM pg_read_file('/etc/passwd') AS f(c))",
            "EXISTS (SELECT 1 FROM lo_from_bytea(4242424, 'x') AS a(o))",
            "EXISTS (SELECT 1 FROM pg_sleep(5))",
            "length(query_to_xml('DELETE FROM victim RETURNING 1', true, false, '')::text) > 0",
            "EXISTS (SELECT * FROM ts_stat('DELETE FROM victim RETURNING 1'))",
            "evil.lower(name) = 'a'",
            "id IN (SELECT unnest(ARRAY[1, 2]))",
            "id IN (SELECT x FROM unnest(ARRAY[1, 2]) AS t(x))",
            "nextval('orders_id_seq') > 0",
        ] {
            assert!(
                Condition::parse(bad, SqlDialect::Postgresql).is_err(),
                "{bad}"
            );
        }
        for bad in [
            "id <= (SELECT length(file) FROM pragma_database_list WHERE name = 'main')",
            "id <= (SELECT count(*) FROM pragma_table_info('orders'))",
            "readfile('/etc/passwd') IS NOT NULL",
        ] {
            assert!(Condition::parse(bad, SqlDialect::Sqlite).is_err(), "{bad}");
        }
        for denied in DENIED_FUNCTIONS {
            assert!(!is_allowed_function(denied), "{denied}");
        }
    }

    /// Found by the `condition` fuzz target: a function called in a FROM clause is a table
    /// factor, not an expression, and passed the deny list.
    #[test]
    fn server_functions_in_from_are_refused() {
        for bad in [
            "id IN (SELECT 1 FROM pg_sleep(10))",
            "EXISTS (SELECT * FROM pg_catalog.pg_read_file('/etc/passwd'))",
            "EXISTS (SELECT * FROM LATERAL pg_ls_dir('/'))",
            "id IN (SELECT a FROM dblink('host=evil', 'select 1') AS t(a int))",
        ] {
            refused_everywhere(bad);
        }
        // A table named like a function is a table; a function in FROM is refused, even a
        // harmless one.
        Condition::parse("id IN (SELECT id FROM edit)", SqlDialect::Postgresql)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Condition::parse(
                "id IN (SELECT n FROM generate_series(1, 3) AS g(n))",
                SqlDialect::Postgresql
            )
            .is_err()
        );
    }

    #[test]
    fn a_condition_checked_for_one_dialect_is_checked_again_for_another() {
        let maria_only = Condition::parse("`odd name` = 1", SqlDialect::Mariadb).unwrap();
        assert!(maria_only.sql(SqlDialect::Mariadb).is_ok());
        assert!(maria_only.sql(SqlDialect::Postgresql).is_err());
        let joined = Condition::all(&["a > 1", "b < 2"], SqlDialect::Sqlite)
            .unwrap()
            .unwrap();
        assert_eq!(
            joined.sql(SqlDialect::Sqlite).unwrap(),
            "(a > 1) AND (b < 2)"
        );
        assert!(
            Condition::all(
                &["a > 1", "b < 2); DROP TABLE t; SELECT (1"],
                SqlDialect::Sqlite
            )
            .is_err()
        );
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "'",
            "\"",
            "`",
            "[",
            "]",
            "$$",
            "$t$",
            "(",
            ")",
            ";",
            "--",
            "/*",
            "*/",
            "#",
            " ",
            "\n",
            "a",
            "1",
            "=",
            "OR",
            "AND",
            "DROP TABLE victim",
            "SELECT",
            "E'",
            "''",
            "\\",
            "x",
            ",",
            "IN",
            "CASE",
            "END",
            "WHEN",
            "THEN",
        ])
        .prop_map(str::to_owned)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever text is accepted, what is sent carries no statement separator or comment
        /// outside a literal: re-tokenised in its dialect it has no ';' and no comment, and it
        /// parses as one expression.
        #[test]
        fn accepted_conditions_stay_one_expression(parts in prop::collection::vec(fragment(), 1..14)) {
            let text: String = parts.concat();
            for d in SqlDialect::ALL {
                if let Ok(c) = Condition::parse(&text, d) {
                    let sql = c.sql(d).unwrap().into_owned();
                    let tokens = Tokenizer::new(d.parser_dialect(), &sql).tokenize().unwrap();
                    prop_assert!(!tokens.iter().any(|t| matches!(t, Token::SemiColon
                        | Token::Whitespace(Whitespace::SingleLineComment { .. })
                        | Token::Whitespace(Whitespace::MultiLineComment(_)))), "{} sent {:?}", d, sql);
                    prop_assert!(parse_one(&sql, d).is_ok());
                }
            }
        }
    }
}
