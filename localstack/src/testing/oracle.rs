//! An independent fold of CSV files into the aggregates a dataset defines,
//! to compare the projector with: see [`oracle`].

use super::data::{data, repo};

/// Per (aggregate, group values): measure name to value.
pub type Folded =
    std::collections::BTreeMap<(String, Vec<String>), std::collections::BTreeMap<String, rust_decimal::Decimal>>;

/// An independent fold of `data/` files, derived from the dataset definitions
/// alone: the TOML files under `schema/datasets/` read as plain TOML (not
/// through the `schema` crate), the line limits from `terraform/settings.json`,
/// the CSV read with the `csv` crate and numbers with `rust_decimal`. Every
/// rule below is the definition's or the documented contract's
/// (docs/ingest.md, "Bad input"); nothing names a file, a column or a value of
/// `data/`. Typed datasets only (the untyped fallback has no aggregates); the
/// per-file statistics are checked against `data/expected.json` elsewhere.
pub fn oracle(keys: &[&str]) -> Folded {
    let files: Vec<(&str, Vec<u8>)> = keys.iter().map(|k| (*k, data(k))).collect();
    oracle_of(&files)
}

/// [`oracle`] of files given by content: (key below the upload prefix, bytes).
pub fn oracle_of(files: &[(&str, Vec<u8>)]) -> Folded {
    let datasets: Vec<toml::Value> = std::fs::read_dir(repo("schema/datasets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo("terraform/settings.json")).unwrap()).unwrap();
    let limit = |name: &str| -> usize {
        settings["ingest"]["environment"][name]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (max_line, max_columns) = (limit("MAX_LINE_BYTES"), limit("MAX_COLUMNS"));
    let mut out = Folded::new();
    for (key, bytes) in files {
        let Some(ds) = datasets.iter().find(|d| key.starts_with(d["prefix"].as_str().unwrap())) else {
            continue;
        };
        fold_file(ds, bytes, max_line, max_columns, &mut out);
    }
    out
}

/// A typed field, as the definition's column type reads it.
#[derive(Clone, Debug)]
enum Field {
    Text(String),
    Number(rust_decimal::Decimal),
    Bool(bool),
    Date(chrono::NaiveDate),
    Time(chrono::DateTime<chrono::Utc>),
}

/// One non-empty field of a declared type; `None` if it is not one.
fn typed(kind: &str, text: &str) -> Option<Field> {
    use rust_decimal::Decimal;
    Some(match kind {
        "string" => Field::Text(text.to_owned()),
        "integer" => Field::Number(Decimal::from(text.parse::<i64>().ok()?)),
        "decimal" => {
            // Digits, one '.', an optional leading sign: no exponent, no separators.
            let plain = text
                .char_indices()
                .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')));
            if !plain {
                return None;
            }
            Field::Number(Decimal::from_str_exact(text).ok()?)
        }
        "boolean" => Field::Bool(match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "t" => true,
            "false" | "0" | "no" | "n" | "f" => false,
            _ => return None,
        }),
        "date" => Field::Date(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?),
        "timestamp" => Field::Time(match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(_) => [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())?
            .and_utc(),
        }),
        other => panic!("the oracle does not know column type {other:?}: teach it"),
    })
}

fn fold_file(ds: &toml::Value, bytes: &[u8], max_line: usize, max_columns: usize, out: &mut Folded) {
    use rust_decimal::Decimal;
    let columns: Vec<(&str, &str, bool)> = ds["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let required = c.get("required").and_then(toml::Value::as_bool).unwrap_or(false);
            (c["name"].as_str().unwrap(), c["type"].as_str().unwrap(), required)
        })
        .collect();
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut records = r.byte_records().peekable();
    // The header: names trimmed, order free; the file is refused (no events)
    // when it is blank, too wide, not UTF-8, has a blank or repeated name, an
    // undeclared column, or lacks a required one.
    let Some(Ok(header)) = records.next() else { return };
    let Ok(names) = header
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim_start_matches('\u{feff}').trim().to_owned()))
        .collect::<Result<Vec<String>, _>>()
    else {
        return;
    };
    let declared = |n: &str| columns.iter().any(|c| c.0 == n);
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    if names.len() > max_columns
        || names.iter().any(|n| n.is_empty() || !declared(n))
        || distinct.len() != names.len()
        || columns.iter().any(|c| c.2 && !names.iter().any(|n| n == c.0))
    {
        return;
    }
    let aggregates = ds
        .get("aggregates")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    while let Some(rec) = records.next() {
        let Ok(rec) = rec else { continue };
        // A line's length is its raw bytes, up to where the next one starts.
        let start = rec.position().map_or(0, |p| p.byte()) as usize;
        let end = match records.peek() {
            Some(Ok(next)) => next.position().map_or(bytes.len() as u64, |p| p.byte()) as usize,
            _ => bytes.len(),
        };
        let raw = &bytes[start..end];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > max_line || rec.len() != names.len() || rec.len() > max_columns {
            continue;
        }
        let Ok(texts) = rec.iter().map(std::str::from_utf8).collect::<Result<Vec<_>, _>>() else {
            continue;
        };
        // Every field read by its column's type; empty (after trimming) is
        // missing, which a required column refuses.
        let mut row: std::collections::BTreeMap<&str, Field> = Default::default();
        let mut ok = true;
        for (name, text) in names.iter().zip(&texts) {
            let (_, kind, required) = columns.iter().find(|c| c.0 == name).unwrap();
            let text = text.trim();
            if text.is_empty() {
                ok &= !required;
                continue;
            }
            match typed(kind, text) {
                Some(v) => {
                    row.insert(name.as_str(), v);
                }
                None => ok = false,
            }
        }
        if !ok {
            continue;
        }
        let number = |c: &str| match row.get(c) {
            Some(Field::Number(n)) => Some(*n),
            None => None,
            Some(other) => panic!("the oracle folds numbers only, {c} is {other:?}"),
        };
        for agg in &aggregates {
            let group: Vec<String> = agg["group_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|term| {
                    let term = term.as_str().unwrap();
                    let (col, unit) = term.split_once(':').unwrap_or((term, ""));
                    match (row.get(col), unit) {
                        (Some(Field::Text(t)), "") => t.clone(),
                        (Some(Field::Date(d)), "") => d.format("%Y-%m-%d").to_string(),
                        (Some(Field::Bool(b)), "") => b.to_string(),
                        (Some(Field::Time(t)), "day") => t.date_naive().format("%Y-%m-%d").to_string(),
                        (v, u) => panic!("the oracle cannot group by {col}:{u} of {v:?}: teach it"),
                    }
                })
                .collect();
            let measures = out
                .entry((agg["name"].as_str().unwrap().to_owned(), group))
                .or_default();
            for m in agg["measures"].as_array().unwrap() {
                let name = m["name"].as_str().unwrap().to_owned();
                let value = match (m.get("column"), m.get("product")) {
                    (Some(c), _) => number(c.as_str().unwrap()),
                    (None, Some(p)) => p
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| number(c.as_str().unwrap()))
                        .product(),
                    (None, None) => None,
                };
                match (m["op"].as_str().unwrap(), value) {
                    ("count", _) => *measures.entry(name).or_insert(Decimal::ZERO) += Decimal::ONE,
                    ("sum", Some(v)) => *measures.entry(name).or_insert(Decimal::ZERO) += v,
                    ("min", Some(v)) => {
                        let e = measures.entry(name).or_insert(v);
                        *e = (*e).min(v);
                    }
                    ("max", Some(v)) => {
                        let e = measures.entry(name).or_insert(v);
                        *e = (*e).max(v);
                    }
                    (_, None) => {}
                    (op, _) => panic!("the oracle does not know measure op {op:?}: teach it"),
                }
            }
        }
    }
}
