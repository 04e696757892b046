//! Mapping values from source column types to target column types.
//!
//! A conversion either keeps the value exactly or fails: integers narrow only when they fit, decimals
//! never round, floats convert only when the result is the same number, text fits its varchar length.
//! A failure names table, column and key (the caller adds them); nothing is silently altered.

use chrono::NaiveTime;
use sluice_model::{DataType, Decimal, RowBatch, Value};

/// Converts `value` to a value of `to`. The error says why the target cannot hold it.
pub fn convert(value: Value, to: DataType) -> Result<Value, String> {
    if value.conforms_to(to) {
        return match (value, to) {
            (Value::Text(s), DataType::Varchar(n)) => fit_varchar(s, n),
            (Value::Decimal(d), DataType::Decimal { precision, scale }) => {
                fit_decimal(d, precision, scale)
            }
            (v, _) => Ok(v),
        };
    }
    let cannot = |v: &Value| format!("a {} value cannot be stored as {to}", type_word(v));
    let out_of_range = |v: &Value| format!("{v} is outside the range of {to}");
    Ok(match (value, to) {
        (v @ (Value::Int16(_) | Value::Int32(_) | Value::Int64(_)), _) => {
            let i = match v {
                Value::Int16(i) => i64::from(i),
                Value::Int32(i) => i64::from(i),
                Value::Int64(i) => i,
                _ => unreachable!("matched integers"),
            };
            match to {
                DataType::Int16 => Value::Int16(i16::try_from(i).map_err(|_| out_of_range(&v))?),
                DataType::Int32 => Value::Int32(i32::try_from(i).map_err(|_| out_of_range(&v))?),
                DataType::Int64 => Value::Int64(i),
                DataType::Numeric => Value::Decimal(Decimal::from_i64(i)),
                DataType::Decimal { precision, scale } => {
                    fit_decimal(Decimal::from_i64(i), precision, scale)?
                }
                DataType::Float64 if i.unsigned_abs() <= 1 << 53 => Value::Float64(i as f64),
                DataType::Float32 if i.unsigned_abs() <= 1 << 24 => Value::Float32(i as f32),
                DataType::Bool if i == 0 || i == 1 => Value::Bool(i == 1),
                DataType::Text => Value::Text(i.to_string()),
                DataType::Varchar(n) => fit_varchar(i.to_string(), n)?,
                _ => return Err(cannot(&v)),
            }
        }
        (Value::Decimal(d), _) => match to {
            DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let i = d
                    .to_i64()
                    .ok_or_else(|| format!("{d} is not an integer in the range of {to}"))?;
                convert(Value::Int64(i), to)?
            }
            DataType::Float64 => {
                let f = d.to_f64();
                if Decimal::from_f64(f).as_ref() != Some(&d) {
                    return Err(format!("{d} has no exact {to} value"));
                }
                Value::Float64(f)
            }
            DataType::Float32 => {
                let f = d.to_f64() as f32;
                if Decimal::from_f64(f64::from(f)).as_ref() != Some(&d) {
                    return Err(format!("{d} has no exact {to} value"));
                }
                Value::Float32(f)
            }
            DataType::Text => Value::Text(d.to_string()),
            DataType::Varchar(n) => fit_varchar(d.to_string(), n)?,
            _ => return Err(cannot(&Value::Decimal(d))),
        },
        (v @ (Value::Float32(_) | Value::Float64(_)), _) => {
            let f = match v {
                Value::Float32(f) => f64::from(f),
                Value::Float64(f) => f,
                _ => unreachable!("matched floats"),
            };
            match to {
                DataType::Float64 => Value::Float64(f),
                DataType::Float32 => {
                    let narrow = f as f32;
                    if f64::from(narrow) != f && !f.is_nan() {
                        return Err(format!("{f} has no exact {to} value"));
                    }
                    Value::Float32(narrow)
                }
                DataType::Numeric | DataType::Decimal { .. } => {
                    let d = Decimal::from_f64(f)
                        .ok_or_else(|| format!("{f} is not a finite number"))?;
                    convert(Value::Decimal(d), to)?
                }
                DataType::Int16 | DataType::Int32 | DataType::Int64
                    if f.fract() == 0.0 && f.abs() < 9.2e18 =>
                {
                    convert(Value::Int64(f as i64), to)?
                }
                DataType::Text => Value::Text(f.to_string()),
                _ => return Err(cannot(&v)),
            }
        }
        (Value::Bool(b), DataType::Int16 | DataType::Int32 | DataType::Int64) => {
            convert(Value::Int64(i64::from(b)), to)?
        }
        (Value::Bool(b), DataType::Text) => Value::Text(b.to_string()),
        (Value::Text(s), _) => match to {
            DataType::Json => {
                serde_json::from_str::<serde_json::Value>(&s)
                    .map_err(|_| "the text is not a JSON document".to_owned())?;
                Value::Json(s)
            }
            DataType::Uuid => Value::Uuid(
                uuid::Uuid::parse_str(&s).map_err(|_| "the text is not a UUID".to_owned())?,
            ),
            DataType::Bytes => Value::Bytes(s.into_bytes()),
            DataType::Numeric | DataType::Decimal { .. } => {
                // Only a plain literal is the same number as text: `007`, `1e3` or ` 5` would be
                // reinterpreted, not carried.
                if !is_plain_number(&s) {
                    return Err("the text is not a plain decimal number".to_owned());
                }
                let d = Decimal::parse(&s).map_err(|_| "the text is not a number".to_owned())?;
                convert(Value::Decimal(d), to)?
            }
            _ => return Err(cannot(&Value::Text(s))),
        },
        (Value::Json(s), DataType::Text) => Value::Text(s),
        (Value::Json(s), DataType::Varchar(n)) => fit_varchar(s, n)?,
        (Value::Uuid(u), DataType::Text) => Value::Text(u.hyphenated().to_string()),
        (Value::Uuid(u), DataType::Varchar(n)) => fit_varchar(u.hyphenated().to_string(), n)?,
        (Value::Uuid(u), DataType::Bytes) => Value::Bytes(u.as_bytes().to_vec()),
        (Value::Bytes(b), DataType::Text) => Value::Text(
            String::from_utf8(b).map_err(|_| "the bytes are not valid UTF-8".to_owned())?,
        ),
        (Value::Date(d), DataType::Timestamp) => Value::Timestamp(d.and_time(NaiveTime::MIN)),
        (Value::Date(d), DataType::TimestampTz) => {
            Value::TimestampTz(d.and_time(NaiveTime::MIN).and_utc())
        }
        (Value::Timestamp(ts), DataType::TimestampTz) => Value::TimestampTz(ts.and_utc()),
        (Value::Timestamp(ts), DataType::Date) if ts.time() == NaiveTime::MIN => {
            Value::Date(ts.date())
        }
        (Value::TimestampTz(ts), DataType::Timestamp) => Value::Timestamp(ts.naive_utc()),
        (v, _) => return Err(cannot(&v)),
    })
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: a number written the one way it reads back.
fn is_plain_number(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn fit_varchar(s: String, n: u32) -> Result<Value, String> {
    let chars = s.chars().count();
    if chars > n as usize {
        return Err(format!(
            "the text is {chars} characters long, more than varchar({n}) holds"
        ));
    }
    Ok(Value::Text(s))
}

fn fit_decimal(d: Decimal, precision: u16, scale: u16) -> Result<Value, String> {
    if !d.fits(precision, scale) {
        return Err(format!(
            "{d} does not fit decimal({precision},{scale}) without rounding"
        ));
    }
    Ok(Value::Decimal(d))
}

fn type_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "bool",
        Value::Int16(_) => "int16",
        Value::Int32(_) => "int32",
        Value::Int64(_) => "int64",
        Value::Float32(_) => "float32",
        Value::Float64(_) => "float64",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::TimestampTz(_) => "timestamptz",
        Value::Json(_) => "json",
        Value::Uuid(_) => "uuid",
    }
}

/// Where each written column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The read column at this index.
    Column(usize),
    /// NULL (the column is absent at the source).
    Null,
}

/// What happens to one written column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Written as read.
    Keep,
    /// Same type, but the value must be checked against the column (varchar length, decimal
    /// precision): engines that do not enforce a declared size may hold values that do not fit.
    Check(DataType),
    /// Converted to this type.
    Convert(DataType),
}

/// How rows read from the source become rows written to the target.
#[derive(Debug, Clone)]
pub struct RowMapping {
    sources: Vec<Source>,
    steps: Vec<Step>,
    /// The written columns are the read columns in order: batches are changed where they are.
    in_place: bool,
}

impl RowMapping {
    /// A mapping writing `sources` with `target_types`, converting where `source_types` differ.
    pub fn new(sources: Vec<Source>, source_types: &[DataType], target_types: &[DataType]) -> Self {
        let steps: Vec<Step> = sources
            .iter()
            .zip(target_types)
            .map(|(src, &to)| match src {
                Source::Column(i) if source_types[*i] == to && needs_fit(to) => Step::Check(to),
                Source::Column(i) if source_types[*i] == to => Step::Keep,
                _ => Step::Convert(to),
            })
            .collect();
        let in_place = sources.len() == source_types.len()
            && sources
                .iter()
                .enumerate()
                .all(|(i, s)| *s == Source::Column(i));
        RowMapping {
            sources,
            steps,
            in_place,
        }
    }

    /// Whether rows pass through unchanged and unchecked.
    pub fn is_identity(&self) -> bool {
        self.in_place && self.steps.iter().all(|s| *s == Step::Keep)
    }

    /// Maps a batch; fails on the first value the target cannot hold.
    pub fn apply(&self, mut batch: RowBatch) -> Result<RowBatch, MapError> {
        if self.is_identity() {
            return Ok(batch);
        }
        if self.in_place {
            for row in batch.rows_mut() {
                for (c, step) in self.steps.iter().enumerate() {
                    let result = match *step {
                        Step::Keep => Ok(()),
                        Step::Check(to) => check(&row[c], to),
                        Step::Convert(to) => convert(row[c].clone(), to).map(|v| row[c] = v),
                    };
                    if let Err(reason) = result {
                        return Err(MapError {
                            row: row.to_vec(),
                            column: c,
                            reason,
                        });
                    }
                }
            }
            return Ok(batch);
        }
        let mut out = RowBatch::new(self.sources.len(), batch.limits());
        for row in batch.rows() {
            let mut mapped = Vec::with_capacity(self.sources.len());
            for (c, (src, step)) in self.sources.iter().zip(&self.steps).enumerate() {
                let value = match src {
                    Source::Column(i) => row[*i].clone(),
                    Source::Null => Value::Null,
                };
                let fail = |reason| MapError {
                    row: row.to_vec(),
                    column: c,
                    reason,
                };
                let value = match *step {
                    Step::Keep => value,
                    Step::Check(to) => {
                        check(&value, to).map_err(fail)?;
                        value
                    }
                    Step::Convert(to) => convert(value, to).map_err(fail)?,
                };
                mapped.push(value);
            }
            out.push_row(mapped).map_err(|e| MapError {
                row: row.to_vec(),
                column: 0,
                reason: e.to_string(),
            })?;
        }
        Ok(out)
    }
}

/// Checks a value of the column's own type against the column's declared size.
fn check(value: &Value, to: DataType) -> Result<(), String> {
    match (value, to) {
        // Bytes bound characters from above: most texts pass without counting.
        (Value::Text(s), DataType::Varchar(n)) if s.len() <= n as usize => Ok(()),
        (Value::Text(s), DataType::Varchar(n)) => {
            let chars = s.chars().count();
            if chars > n as usize {
                return Err(format!(
                    "the text is {chars} characters long, more than varchar({n}) holds"
                ));
            }
            Ok(())
        }
        (Value::Decimal(d), DataType::Decimal { precision, scale })
            if !d.fits(precision, scale) =>
        {
            Err(format!(
                "{d} does not fit decimal({precision},{scale}) without rounding"
            ))
        }
        _ => Ok(()),
    }
}

/// A value the target cannot hold.
#[derive(Debug, Clone, PartialEq)]
pub struct MapError {
    /// The source row, as read.
    pub row: Vec<Value>,
    /// Index of the written column.
    pub column: usize,
    /// Why.
    pub reason: String,
}

/// Types whose values must be checked against the column even when the types match.
fn needs_fit(ty: DataType) -> bool {
    // A varchar or decimal read from one engine may exceed the same declared type in another.
    matches!(ty, DataType::Varchar(_) | DataType::Decimal { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::parse(s).unwrap())
    }

    #[test]
    fn exact_conversions_pass() {
        assert_eq!(
            convert(Value::Int64(5), DataType::Int16).unwrap(),
            Value::Int16(5)
        );
        assert_eq!(
            convert(Value::Int32(5), DataType::decimal(3, 1).unwrap()).unwrap(),
            dec("5")
        );
        assert_eq!(
            convert(dec("12"), DataType::Int32).unwrap(),
            Value::Int32(12)
        );
        assert_eq!(
            convert(Value::Float64(0.5), DataType::Float32).unwrap(),
            Value::Float32(0.5)
        );
        assert_eq!(
            convert(Value::Float64(12.5), DataType::decimal(4, 2).unwrap()).unwrap(),
            dec("12.5")
        );
        assert_eq!(
            convert(Value::Text("é".repeat(3)), DataType::Varchar(3)).unwrap(),
            Value::Text("ééé".into())
        );
        assert_eq!(convert(Value::Null, DataType::Int16).unwrap(), Value::Null);
    }

    #[test]
    fn lossy_conversions_fail() {
        assert!(
            convert(Value::Int64(70_000), DataType::Int16)
                .unwrap_err()
                .contains("outside the range")
        );
        assert!(
            convert(dec("1.234"), DataType::decimal(12, 2).unwrap())
                .unwrap_err()
                .contains("rounding")
        );
        assert!(convert(dec("12.5"), DataType::Int64).is_err());
        assert!(convert(Value::Float64(0.1), DataType::Float32).is_err());
        assert!(convert(Value::Int64((1 << 53) + 1), DataType::Float64).is_err());
        assert!(
            convert(Value::Text("abcd".into()), DataType::Varchar(3))
                .unwrap_err()
                .contains("4 characters")
        );
        assert!(convert(Value::Text("{".into()), DataType::Json).is_err());
        for reinterpreted in ["007", "1e3", " 5", "+5", "5.", ".5", "0x10"] {
            assert!(
                convert(Value::Text(reinterpreted.into()), DataType::Numeric).is_err(),
                "{reinterpreted}"
            );
        }
        assert_eq!(
            convert(Value::Text("-12.50".into()), DataType::Numeric).unwrap(),
            dec("-12.5")
        );
        assert!(convert(Value::Date(chrono::NaiveDate::MIN), DataType::Int64).is_err());
    }

    #[test]
    fn mapping_projects_fills_and_converts() {
        let mapping = RowMapping::new(
            vec![Source::Column(1), Source::Null, Source::Column(0)],
            &[DataType::Int64, DataType::Text],
            &[DataType::Text, DataType::Int32, DataType::Int16],
        );
        assert!(!mapping.is_identity());
        let mut batch = RowBatch::new(2, sluice_model::BatchLimits::DEFAULT);
        batch
            .push_row([Value::Int64(7), Value::Text("a".into())])
            .unwrap();
        let out = mapping.apply(batch).unwrap();
        assert_eq!(
            out.row(0),
            &[Value::Text("a".into()), Value::Null, Value::Int16(7)]
        );

        let mut batch = RowBatch::new(2, sluice_model::BatchLimits::DEFAULT);
        batch
            .push_row([Value::Int64(1 << 20), Value::Text("a".into())])
            .unwrap();
        let MapError {
            row,
            column,
            reason,
        } = mapping.apply(batch).unwrap_err();
        assert_eq!(row[0], Value::Int64(1 << 20));
        assert_eq!(column, 2);
        assert!(reason.contains("outside the range of int16"));
    }

    #[test]
    fn checks_happen_in_place() {
        let mapping = RowMapping::new(
            vec![Source::Column(0), Source::Column(1)],
            &[DataType::Int64, DataType::Varchar(3)],
            &[DataType::Int32, DataType::Varchar(3)],
        );
        assert!(!mapping.is_identity());
        let mut batch = RowBatch::new(2, sluice_model::BatchLimits::DEFAULT);
        batch
            .push_row([Value::Int64(1), Value::Text("ééé".into())])
            .unwrap();
        batch
            .push_row([Value::Int64(2), Value::Text("abcd".into())])
            .unwrap();
        let MapError {
            row,
            column,
            reason,
        } = mapping.apply(batch).unwrap_err();
        assert_eq!(
            (row[0].clone(), column),
            (Value::Int32(2), 1),
            "the key was converted before the check failed"
        );
        assert!(reason.contains("4 characters"), "{reason}");
    }

    #[test]
    fn same_types_pass_through() {
        let mapping = RowMapping::new(
            vec![Source::Column(0), Source::Column(1)],
            &[DataType::Int64, DataType::Text],
            &[DataType::Int64, DataType::Text],
        );
        assert!(mapping.is_identity());
    }
}
