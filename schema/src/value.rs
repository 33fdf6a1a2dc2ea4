//! Column types and the parsing of CSV text into typed values.
//!
//! Accepted values are stored in their canonical text form: exact for decimals
//! (DynamoDB numbers would drop the scale of `12.50`) and the same bytes on
//! every retry, so an event written twice is identical.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Any UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// An exact decimal (money): up to 28 significant digits.
    Decimal,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, any case).
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 timestamp, or `YYYY-MM-DD HH:MM:SS` taken as UTC.
    Timestamp,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        })
    }
}

/// A typed value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// Text.
    String(String),
    /// Integer.
    Integer(i64),
    /// Exact decimal.
    Decimal(Decimal),
    /// Boolean.
    Boolean(bool),
    /// Date.
    Date(NaiveDate),
    /// UTC instant.
    Timestamp(DateTime<Utc>),
}

impl ColumnType {
    /// Parse one non-empty field. The error is the reason, for a rejected event.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        match self {
            ColumnType::String => Ok(Value::String(text.to_owned())),
            ColumnType::Integer => i64::from_str(text)
                .map(Value::Integer)
                .map_err(|e| format!("{text:?} is not an integer ({e})")),
            ColumnType::Decimal => parse_decimal(text).map(Value::Decimal),
            ColumnType::Boolean => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "t" => Ok(Value::Boolean(true)),
                "false" | "0" | "no" | "n" | "f" => Ok(Value::Boolean(false)),
                _ => Err(format!("{text:?} is not a boolean (true/false, 1/0, yes/no)")),
            },
            ColumnType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Value::Date)
                .map_err(|e| format!("{text:?} is not a date YYYY-MM-DD ({e})")),
            ColumnType::Timestamp => parse_timestamp(text).map(Value::Timestamp),
        }
    }
}

fn parse_decimal(text: &str) -> Result<Decimal, String> {
    // Exponent notation and thousands separators are refused: money written as
    // `1e3` or `1,000` is ambiguous, and a silent reading would be wrong.
    let ok_chars = text
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && (b == b'-' || b == b'+')));
    if !ok_chars {
        return Err(format!(
            "{text:?} is not a decimal number (digits, one '.', optional sign)"
        ));
    }
    Decimal::from_str_exact(text).map_err(|e| format!("{text:?} is not a decimal number ({e})"))
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "{text:?} is not a timestamp (RFC 3339, or YYYY-MM-DD HH:MM:SS in UTC)"
    ))
}

impl Value {
    /// The canonical text stored in events: re-parsing it gives the same value.
    pub fn canonical(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        }
    }

    /// The value as a decimal, for numeric measures.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Integer(i) => Some(Decimal::from(*i)),
            Value::Decimal(d) => Some(*d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        let cases: &[(ColumnType, &str, &str)] = &[
            (ColumnType::Integer, "-42", "-42"),
            (ColumnType::Decimal, "12.50", "12.50"),
            (ColumnType::Decimal, "+0.1", "0.1"),
            (ColumnType::Boolean, "YES", "true"),
            (ColumnType::Boolean, "0", "false"),
            (ColumnType::Date, "2024-02-29", "2024-02-29"),
            (
                ColumnType::Timestamp,
                "2024-03-01T10:00:00+02:00",
                "2024-03-01T08:00:00Z",
            ),
            (ColumnType::Timestamp, "2024-03-01 10:00:00", "2024-03-01T10:00:00Z"),
            (ColumnType::String, " keep spaces ", " keep spaces "),
        ];
        for (ty, input, canonical) in cases {
            let v = ty.parse(input).unwrap_or_else(|e| panic!("{ty} {input:?}: {e}"));
            assert_eq!(v.canonical(), *canonical, "{ty} {input:?}");
            assert_eq!(ty.parse(&v.canonical()).unwrap(), v, "{ty} {input:?} re-parses");
        }
    }

    #[test]
    fn refuses_with_reason() {
        let cases: &[(ColumnType, &str, &str)] = &[
            (ColumnType::Integer, "4.5", "not an integer"),
            (ColumnType::Integer, "99999999999999999999", "not an integer"),
            (ColumnType::Decimal, "1e3", "not a decimal"),
            (ColumnType::Decimal, "1,000", "not a decimal"),
            (ColumnType::Decimal, "1.2.3", "not a decimal"),
            (ColumnType::Decimal, "NaN", "not a decimal"),
            (ColumnType::Boolean, "maybe", "not a boolean"),
            (ColumnType::Date, "2023-02-29", "not a date"),
            (ColumnType::Date, "31/01/2024", "not a date"),
            (ColumnType::Timestamp, "yesterday", "not a timestamp"),
        ];
        for (ty, input, want) in cases {
            let err = ty.parse(input).expect_err(input);
            assert!(err.contains(want), "{ty} {input:?}: {err}");
        }
    }
}
