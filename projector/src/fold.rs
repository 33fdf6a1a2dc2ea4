//! Folding accepted rows into aggregate deltas: pure, synchronous, exact.
//!
//! A batch of events is folded in memory first, so it costs one write per
//! aggregate group it touches rather than one per event.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use schema::dataset::{parse_group_term, Aggregate, MeasureOp};
use schema::{ColumnType, Dataset, Fields};

/// One group of one aggregate: the aggregate's name and its group-by values
/// (canonical text, in the order the definition lists them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by values.
    pub values: Vec<String>,
}

impl GroupKey {
    /// The group's key in the aggregates table ([`schema::keys::group_pk`]).
    pub fn pk(&self) -> String {
        schema::keys::group_pk(&self.dataset, &self.aggregate, &self.values)
    }
}

/// One measure's running value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acc {
    /// Rows.
    Count(u64),
    /// Exact sum.
    Sum(Decimal),
    /// Smallest value seen.
    Min(Decimal),
    /// Largest value seen.
    Max(Decimal),
    /// Earliest time seen, epoch seconds (stored as RFC 3339).
    Earliest(i64),
    /// Latest time seen, epoch seconds (stored as RFC 3339).
    Latest(i64),
}

impl Acc {
    /// The value as stored: a count or an exact decimal, as text; a time in
    /// RFC 3339 (UTC, whole seconds), which sorts as it compares.
    pub fn text(&self) -> String {
        match self {
            Acc::Count(n) => n.to_string(),
            Acc::Sum(d) | Acc::Min(d) | Acc::Max(d) => d.to_string(),
            Acc::Earliest(t) | Acc::Latest(t) => chrono::DateTime::from_timestamp(*t, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// Read a stored value back for a measure of `op`. A time is RFC 3339,
    /// or epoch seconds as aggregates written before feed schema 2 hold it.
    pub fn parse(op: MeasureOp, text: &str) -> Option<Acc> {
        let time = || -> Option<i64> {
            match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => Some(t.timestamp()),
                Err(_) => text.parse().ok(),
            }
        };
        Some(match op {
            MeasureOp::Count => Acc::Count(text.parse().ok()?),
            MeasureOp::Sum => Acc::Sum(text.parse().ok()?),
            MeasureOp::Min => Acc::Min(text.parse().ok()?),
            MeasureOp::Max => Acc::Max(text.parse().ok()?),
            MeasureOp::Earliest => Acc::Earliest(time()?),
            MeasureOp::Latest => Acc::Latest(time()?),
        })
    }

    /// Combine two values of the same measure. Count and sum add; min, max,
    /// earliest and latest keep the extreme: all are associative and
    /// commutative, so the order in which events are folded does not matter.
    pub fn merge(self, other: Acc) -> Acc {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => Acc::Count(a + b),
            (Acc::Sum(a), Acc::Sum(b)) => Acc::Sum(a + b),
            (Acc::Min(a), Acc::Min(b)) => Acc::Min(a.min(b)),
            (Acc::Max(a), Acc::Max(b)) => Acc::Max(a.max(b)),
            (Acc::Earliest(a), Acc::Earliest(b)) => Acc::Earliest(a.min(b)),
            (Acc::Latest(a), Acc::Latest(b)) => Acc::Latest(a.max(b)),
            (a, b) => panic!("merging different measures {a:?} and {b:?}: a bug in the fold plan"),
        }
    }
}

/// The deltas of a batch: per group, its measures in definition order.
pub type Deltas = BTreeMap<GroupKey, Vec<Acc>>;

/// An accepted event that cannot be folded: its fields do not match the
/// dataset's definition (a definition changed under stored events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aggregate {aggregate:?}: column {column:?}: {reason}")]
pub struct FoldError {
    /// The aggregate.
    pub aggregate: String,
    /// The column.
    pub column: String,
    /// What is wrong.
    pub reason: String,
}

struct Plan {
    name: String,
    groups: Vec<(String, ColumnType, bool)>,
    measures: Vec<(MeasureOp, Vec<String>)>,
    measure_names: Vec<String>,
    group_terms: Vec<String>,
}

/// The per-file statistics every dataset has: group `[file_id]`.
pub const FILE_STATS: &str = "file_stats";

/// The measures of [`FILE_STATS`]: accepted and rejected lines, and when the
/// first and last of them reached the stream (RFC 3339).
pub const FILE_STATS_MEASURES: [(&str, MeasureOp); 4] = [
    ("accepted", MeasureOp::Sum),
    ("rejected", MeasureOp::Sum),
    ("first_seen", MeasureOp::Earliest),
    ("last_seen", MeasureOp::Latest),
];

/// Folds the rows of one dataset into its aggregates.
pub struct Folder {
    dataset: String,
    plans: Vec<Plan>,
}

impl Folder {
    /// The fold plan of a dataset (its definition is checked at load time).
    pub fn new(dataset: &Dataset) -> Self {
        let plans = dataset.aggregates.iter().map(|a| plan(dataset, a)).collect();
        Folder {
            dataset: dataset.name.clone(),
            plans,
        }
    }

    /// The dataset.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// The measures of an aggregate (its name and op), in stored order.
    pub fn measures(&self, aggregate: &str) -> Option<Vec<(String, MeasureOp)>> {
        if aggregate == FILE_STATS {
            return Some(FILE_STATS_MEASURES.iter().map(|(n, o)| ((*n).to_owned(), *o)).collect());
        }
        let p = self.plans.iter().find(|p| p.name == aggregate)?;
        Some(
            p.measure_names
                .iter()
                .cloned()
                .zip(p.measures.iter().map(|(o, _)| *o))
                .collect(),
        )
    }

    /// The group-by terms of an aggregate (`ordered_at:day`, `country`).
    pub fn group_columns(&self, aggregate: &str) -> Option<Vec<String>> {
        Some(self.plans.iter().find(|p| p.name == aggregate)?.group_terms.clone())
    }

    /// Count one line (accepted or not) in its file's statistics.
    pub fn file_stats(&self, file_id: &str, accepted: bool, at: i64, deltas: &mut Deltas) {
        let one = |b: bool| Decimal::from(u8::from(b));
        let key = GroupKey {
            dataset: self.dataset.clone(),
            aggregate: FILE_STATS.to_owned(),
            values: vec![file_id.to_owned()],
        };
        merge_into(
            deltas,
            key,
            vec![
                Acc::Sum(one(accepted)),
                Acc::Sum(one(!accepted)),
                Acc::Earliest(at),
                Acc::Latest(at),
            ],
        );
    }

    /// Add one accepted row to `deltas`. Nothing is added if the row fails.
    pub fn apply(&self, fields: &Fields, deltas: &mut Deltas) -> Result<(), FoldError> {
        // Compute everything first, so a bad row leaves `deltas` untouched.
        let mut staged = Vec::with_capacity(self.plans.len());
        for p in &self.plans {
            let err = |column: &str, reason: String| FoldError {
                aggregate: p.name.clone(),
                column: column.to_owned(),
                reason,
            };
            let mut values = Vec::with_capacity(p.groups.len());
            for (col, ty, by_day) in &p.groups {
                let v = fields.get(col).map(String::as_str).unwrap_or("");
                values.push(if *by_day {
                    day(v, *ty).map_err(|r| err(col, r))?
                } else {
                    v.to_owned()
                });
            }
            let mut accs = Vec::with_capacity(p.measures.len());
            for (op, cols) in &p.measures {
                let acc = match op {
                    MeasureOp::Count => Acc::Count(1),
                    _ => {
                        let mut x = Decimal::ONE;
                        for c in cols {
                            let text = fields.get(c).ok_or_else(|| err(c, "missing".into()))?;
                            let d = Decimal::from_str_exact(text).map_err(|e| err(c, format!("{text:?}: {e}")))?;
                            x = x.checked_mul(d).ok_or_else(|| err(c, "product overflows".into()))?;
                        }
                        match op {
                            MeasureOp::Sum => Acc::Sum(x),
                            MeasureOp::Min => Acc::Min(x),
                            MeasureOp::Max => Acc::Max(x),
                            MeasureOp::Count => unreachable!("handled above"),
                            MeasureOp::Earliest | MeasureOp::Latest => {
                                unreachable!("times are file_stats' own; a definition cannot name them")
                            }
                        }
                    }
                };
                accs.push(acc);
            }
            staged.push((
                GroupKey {
                    dataset: self.dataset.clone(),
                    aggregate: p.name.clone(),
                    values,
                },
                accs,
            ));
        }
        for (key, accs) in staged {
            merge_into(deltas, key, accs);
        }
        Ok(())
    }
}

/// Merge one group's measures into a set of deltas.
pub fn merge_into(deltas: &mut Deltas, key: GroupKey, accs: Vec<Acc>) {
    match deltas.get_mut(&key) {
        Some(existing) => {
            for (e, a) in existing.iter_mut().zip(accs) {
                *e = e.merge(a);
            }
        }
        None => {
            deltas.insert(key, accs);
        }
    }
}

fn plan(ds: &Dataset, a: &Aggregate) -> Plan {
    let groups = a
        .group_by
        .iter()
        .map(|term| {
            let (col, trunc) = parse_group_term(term);
            let ty = ds.column(col).map_or(ColumnType::String, |c| c.ty);
            (col.to_owned(), ty, trunc == Some("day"))
        })
        .collect();
    let measures = a
        .measures
        .iter()
        .map(|m| {
            let cols = match (&m.column, &m.product) {
                (Some(c), _) => vec![c.clone()],
                (None, Some(p)) => p.clone(),
                (None, None) => vec![],
            };
            (m.op, cols)
        })
        .collect();
    Plan {
        name: a.name.clone(),
        groups,
        measures,
        measure_names: a.measures.iter().map(|m| m.name.clone()).collect(),
        group_terms: a.group_by.clone(),
    }
}

/// The UTC calendar day of a canonical date or timestamp.
fn day(text: &str, ty: ColumnType) -> Result<String, String> {
    let date = match ty {
        ColumnType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| format!("{text:?}: {e}"))?,
        _ => DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("{text:?}: {e}"))?
            .naive_utc()
            .date(),
    };
    Ok(date.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::Registry;

    fn row(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn order(day: &str, country: &str, category: &str, qty: &str, price: &str) -> Fields {
        row(&[
            ("ordered_at", &format!("{day}T10:00:00Z")),
            ("country", country),
            ("currency", "EUR"),
            ("category", category),
            ("quantity", qty),
            ("unit_price", price),
        ])
    }

    #[test]
    fn folds_exactly_and_in_any_order() {
        let ds = Registry::builtin().get("orders").unwrap().clone();
        let f = Folder::new(&ds);
        let rows = [
            order("2024-01-01", "DE", "books", "2", "12.50"),
            order("2024-01-01", "DE", "toys", "1", "0.10"),
            order("2024-01-01", "FR", "books", "3", "0.20"),
            order("2024-01-02", "DE", "books", "1", "99.99"),
        ];
        let mut forward = Deltas::new();
        for r in &rows {
            f.apply(r, &mut forward).unwrap();
        }
        let mut backward = Deltas::new();
        for r in rows.iter().rev() {
            f.apply(r, &mut backward).unwrap();
        }
        assert_eq!(forward, backward);
        let key = |agg: &str, v: &[&str]| GroupKey {
            dataset: "orders".into(),
            aggregate: agg.into(),
            values: v.iter().map(|s| (*s).to_owned()).collect(),
        };
        let de = &forward[&key("revenue_by_day_country", &["2024-01-01", "DE", "EUR"])];
        // 2 * 12.50 + 1 * 0.10, exactly.
        assert_eq!(
            de,
            &[
                Acc::Count(2),
                Acc::Sum(Decimal::from(3)),
                Acc::Sum("25.10".parse().unwrap())
            ]
        );
        let books = &forward[&key("units_by_category", &["books"])];
        assert_eq!(
            books,
            &[
                Acc::Count(3),
                Acc::Sum(Decimal::from(6)),
                Acc::Min("0.20".parse().unwrap()),
                Acc::Max("99.99".parse().unwrap())
            ]
        );
        assert_eq!(forward.len(), 3 + 2);
    }

    #[test]
    fn a_row_that_does_not_fit_adds_nothing() {
        let ds = Registry::builtin().get("orders").unwrap().clone();
        let f = Folder::new(&ds);
        let mut d = Deltas::new();
        let bad = order("2024-01-01", "DE", "books", "2", "abc");
        let e = f.apply(&bad, &mut d).unwrap_err();
        assert_eq!(e.column, "unit_price");
        assert!(d.is_empty());
    }
}
