//! Dataset definitions: which S3 prefix a dataset owns, its typed columns and
//! its aggregates. Definitions are TOML files, checked once at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DefinitionError;
use crate::value::ColumnType;

/// Name of the dataset that takes objects under no declared prefix.
pub const UNTYPED_DATASET: &str = "untyped";

/// The definitions compiled into every binary, so a Lambda zip carries them.
const BUILTIN: &[(&str, &str)] = &[("orders.toml", include_str!("../datasets/orders.toml"))];

/// One dataset, as declared in its definition file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Unique name, used in item keys and feed messages.
    pub name: String,
    /// Schema version; bumped when the columns change meaning.
    pub version: u32,
    /// S3 key prefix whose objects belong to this dataset (`orders/`).
    pub prefix: String,
    /// What the data is, for people.
    #[serde(default)]
    pub description: String,
    /// Declared columns. Empty for the untyped fallback, which keeps any header.
    #[serde(default)]
    pub columns: Vec<Column>,
    /// Aggregates maintained by the projector.
    #[serde(default)]
    pub aggregates: Vec<Aggregate>,
}

/// One typed column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Header name, matched exactly (after trimming surrounding spaces).
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether the header must have the column and every line a non-empty value.
    #[serde(default)]
    pub required: bool,
}

/// An aggregate: measures folded per group-by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Unique within the dataset.
    pub name: String,
    /// What it means, for people.
    #[serde(default)]
    pub description: String,
    /// Group-by terms: a column name, or `column:day` to truncate a date or
    /// timestamp to its UTC calendar day.
    pub group_by: Vec<String>,
    /// The measures.
    pub measures: Vec<Measure>,
}

/// One measure of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// Unique within the aggregate.
    pub name: String,
    /// How rows are folded.
    pub op: MeasureOp,
    /// The numeric column folded (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
    /// Alternatively, the product of these numeric columns (`quantity * unit_price`).
    #[serde(default)]
    pub product: Option<Vec<String>>,
}

/// How a measure folds rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasureOp {
    /// Number of rows.
    Count,
    /// Exact decimal sum.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Earliest time (RFC 3339): the per-file statistics' arrival times,
    /// never a measure of a definition.
    #[serde(skip_deserializing)]
    Earliest,
    /// Latest time (RFC 3339), as [`MeasureOp::Earliest`].
    #[serde(skip_deserializing)]
    Latest,
}

impl Dataset {
    /// Parse and check one definition. `source` names the file in errors.
    pub fn from_toml(source: &str, text: &str) -> Result<Self, DefinitionError> {
        let ds: Dataset = toml::from_str(text).map_err(|e| DefinitionError::Parse {
            source_name: source.to_owned(),
            message: e.to_string(),
        })?;
        ds.check().map_err(|reason| DefinitionError::Invalid {
            source_name: source.to_owned(),
            reason,
        })?;
        Ok(ds)
    }

    /// The fallback for objects under no declared prefix: every field is text.
    pub fn untyped() -> Self {
        Dataset {
            name: UNTYPED_DATASET.to_owned(),
            version: 1,
            prefix: String::new(),
            description: "Any CSV under no declared prefix; every field kept as text".into(),
            columns: Vec::new(),
            aggregates: Vec::new(),
        }
    }

    /// Whether this is the untyped fallback, which accepts any header.
    pub fn is_untyped(&self) -> bool {
        self.columns.is_empty()
    }

    /// Look a column up by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "dataset name {:?} must be non-empty ASCII letters, digits or _",
                self.name
            ));
        }
        if self.name == UNTYPED_DATASET {
            return Err(format!("the name {UNTYPED_DATASET:?} is reserved for the fallback"));
        }
        if self.prefix.is_empty() || !self.prefix.ends_with('/') {
            return Err(format!("prefix {:?} must be non-empty and end with '/'", self.prefix));
        }
        if self.columns.is_empty() {
            return Err("a dataset needs at least one column".into());
        }
        let mut seen = BTreeSet::new();
        for c in &self.columns {
            if c.name.trim().is_empty() || c.name.trim() != c.name {
                return Err(format!("column name {:?} is empty or has surrounding spaces", c.name));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(format!("column {:?} is declared twice", c.name));
            }
        }
        let mut agg_names = BTreeSet::new();
        for a in &self.aggregates {
            if !agg_names.insert(a.name.as_str()) {
                return Err(format!("aggregate {:?} is declared twice", a.name));
            }
            self.check_aggregate(a)
                .map_err(|e| format!("aggregate {:?}: {e}", a.name))?;
        }
        Ok(())
    }

    fn check_aggregate(&self, a: &Aggregate) -> Result<(), String> {
        if a.measures.is_empty() {
            return Err("needs at least one measure".into());
        }
        for term in &a.group_by {
            let (col, trunc) = parse_group_term(term);
            let c = self
                .column(col)
                .ok_or_else(|| format!("group-by column {col:?} is not declared"))?;
            match trunc {
                None => {}
                Some("day") if matches!(c.ty, ColumnType::Date | ColumnType::Timestamp) => {}
                Some(t) => {
                    return Err(format!(
                        "group-by term {term:?}: {t:?} applies to date or timestamp columns only"
                    ))
                }
            }
        }
        let mut names = BTreeSet::new();
        for m in &a.measures {
            if !names.insert(m.name.as_str()) {
                return Err(format!("measure {:?} is declared twice", m.name));
            }
            let inputs: Vec<&String> = match (&m.column, &m.product) {
                (None, None) if m.op == MeasureOp::Count => vec![],
                (Some(c), None) if m.op != MeasureOp::Count => vec![c],
                (None, Some(p)) if m.op != MeasureOp::Count && p.len() >= 2 => p.iter().collect(),
                _ => {
                    return Err(format!(
                        "measure {:?}: count takes no column; sum, min and max take either `column` or a `product` of two or more columns",
                        m.name
                    ))
                }
            };
            for col in inputs {
                let c = self
                    .column(col)
                    .ok_or_else(|| format!("measure {:?}: column {col:?} is not declared", m.name))?;
                if !matches!(c.ty, ColumnType::Integer | ColumnType::Decimal) {
                    return Err(format!(
                        "measure {:?}: column {col:?} is {} and not numeric",
                        m.name, c.ty
                    ));
                }
                if !c.required {
                    return Err(format!(
                        "measure {:?}: column {col:?} must be required, so every row has a value",
                        m.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Split a group-by term `column[:truncation]`.
pub fn parse_group_term(term: &str) -> (&str, Option<&str>) {
    match term.split_once(':') {
        Some((c, t)) => (c, Some(t)),
        None => (term, None),
    }
}

/// All datasets of a deployment, and the routing of object keys to them.
#[derive(Debug, Clone)]
pub struct Registry {
    datasets: BTreeMap<String, Dataset>,
    untyped: Dataset,
}

impl Registry {
    /// The definitions compiled into the binaries (`schema/datasets/*.toml`).
    pub fn builtin() -> Self {
        Self::from_sources(BUILTIN.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())))
            .expect("built-in dataset definitions are checked by the schema tests")
    }

    /// Every `*.toml` file in a directory.
    pub fn from_dir(dir: &Path) -> Result<Self, DefinitionError> {
        let io = |e: std::io::Error| DefinitionError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).map_err(io)?;
                sources.push((path.display().to_string(), text));
            }
        }
        sources.sort();
        Self::from_sources(sources)
    }

    /// Definitions from (source name, TOML text) pairs.
    pub fn from_sources(sources: impl IntoIterator<Item = (String, String)>) -> Result<Self, DefinitionError> {
        let mut datasets: BTreeMap<String, Dataset> = BTreeMap::new();
        for (source, text) in sources {
            let ds = Dataset::from_toml(&source, &text)?;
            if let Some(other) = datasets
                .values()
                .find(|o| o.prefix.starts_with(&ds.prefix) || ds.prefix.starts_with(&o.prefix))
            {
                return Err(DefinitionError::Invalid {
                    source_name: source,
                    reason: format!(
                        "prefix {:?} overlaps {:?} of dataset {:?}",
                        ds.prefix, other.prefix, other.name
                    ),
                });
            }
            if datasets.contains_key(&ds.name) {
                return Err(DefinitionError::Invalid {
                    source_name: source,
                    reason: format!("dataset {:?} is defined twice", ds.name),
                });
            }
            datasets.insert(ds.name.clone(), ds);
        }
        Ok(Registry {
            datasets,
            untyped: Dataset::untyped(),
        })
    }

    /// The dataset that owns an object key; the untyped fallback if none does.
    pub fn route(&self, key: &str) -> &Dataset {
        self.datasets
            .values()
            .find(|d| key.starts_with(&d.prefix))
            .unwrap_or(&self.untyped)
    }

    /// A dataset by name (the fallback included).
    pub fn get(&self, name: &str) -> Option<&Dataset> {
        if name == UNTYPED_DATASET {
            Some(&self.untyped)
        } else {
            self.datasets.get(name)
        }
    }

    /// The declared datasets, by name.
    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
version = 1
prefix = "t/"
[[columns]]
name = "a"
type = "integer"
required = true
"#;

    #[test]
    fn builtin_definitions_load() {
        let r = Registry::builtin();
        let orders = r.get("orders").expect("orders is built in");
        assert_eq!(orders.prefix, "orders/");
        assert_eq!(orders.aggregates.len(), 2);
        assert_eq!(r.route("orders/2024/jan.csv").name, "orders");
        assert_eq!(r.route("misc/x.csv").name, UNTYPED_DATASET);
        assert_eq!(r.route("ordersX/x.csv").name, UNTYPED_DATASET);
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("name = \"t\"\nversion = 1\nprefix = \"t/\"\ncolour = 1\n", "unknown field `colour`"),
            ("name = \"t\"\nversion = 1\nprefix = \"t\"\n[[columns]]\nname=\"a\"\ntype=\"string\"\n", "must be non-empty and end with '/'"),
            ("name = \"t\"\nversion = 1\nprefix = \"t/\"\n[[columns]]\nname=\"a\"\ntype=\"float\"\n", "unknown variant `float`"),
            ("name = \"t\"\nversion = 1\nprefix = \"t/\"\n", "at least one column"),
            (
                &format!("{MINIMAL}[[columns]]\nname=\"a\"\ntype=\"string\"\n"),
                "declared twice",
            ),
            (
                &format!("{MINIMAL}[[aggregates]]\nname=\"g\"\ngroup_by=[\"b\"]\nmeasures=[{{name=\"n\",op=\"count\"}}]\n"),
                "group-by column \"b\" is not declared",
            ),
            (
                &format!("{MINIMAL}[[aggregates]]\nname=\"g\"\ngroup_by=[\"a:day\"]\nmeasures=[{{name=\"n\",op=\"count\"}}]\n"),
                "applies to date or timestamp columns only",
            ),
            (
                &format!("{MINIMAL}[[aggregates]]\nname=\"g\"\ngroup_by=[]\nmeasures=[{{name=\"n\",op=\"sum\"}}]\n"),
                "take either `column` or a `product`",
            ),
        ];
        for (text, want) in cases {
            let err = Dataset::from_toml("t.toml", text).expect_err(text).to_string();
            assert!(err.contains(want), "definition:\n{text}\nerror: {err}\nwanted: {want}");
            assert!(err.contains("t.toml"), "error names the file: {err}");
        }
    }

    #[test]
    fn overlapping_prefixes_are_refused() {
        let other = MINIMAL
            .replace("name = \"t\"", "name = \"u\"")
            .replace("\"t/\"", "\"t/sub/\"");
        let err = Registry::from_sources([("a.toml".into(), MINIMAL.into()), ("b.toml".into(), other)]).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }
}
