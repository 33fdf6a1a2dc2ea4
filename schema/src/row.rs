//! Header mapping and row validation: a CSV header plus a dataset give a
//! [`RowValidator`]; each record then becomes an accepted row (canonical
//! field texts) or a [`Rejection`] that names the column and the reason.

use std::collections::{BTreeMap, HashSet};

use crate::dataset::Dataset;
use crate::error::HeaderError;
use crate::value::ColumnType;

/// Limits that keep one bad line from costing unbounded memory or an item
/// DynamoDB refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest record, in bytes, before it is rejected.
    pub max_line_bytes: usize,
    /// Most fields on a line (and in the header).
    pub max_columns: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 64 * 1024,
            max_columns: 256,
        }
    }
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The column at fault, where there is one.
    pub column: Option<String>,
    /// What is wrong, for people.
    pub reason: String,
}

impl Rejection {
    /// A rejection about the line as a whole.
    pub fn line(reason: impl Into<String>) -> Self {
        Rejection {
            column: None,
            reason: reason.into(),
        }
    }

    fn column(column: &str, reason: impl Into<String>) -> Self {
        Rejection {
            column: Some(column.to_owned()),
            reason: reason.into(),
        }
    }
}

/// An accepted line: column name to canonical text. Empty optional fields are absent.
pub type Fields = BTreeMap<String, String>;

/// Validates the records of one file against its dataset.
#[derive(Debug, Clone)]
pub struct RowValidator {
    /// Per header position: the column name and its type (`String` when untyped).
    slots: Vec<Slot>,
    limits: Limits,
    /// Untyped: an empty field is kept as an empty string (every field of
    /// the header is the row's); typed: an empty optional field is absent.
    keep_empty: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    ty: ColumnType,
    required: bool,
}

impl RowValidator {
    /// Map a header onto a dataset. Header names are matched exactly after
    /// trimming spaces; their order is free. A header the dataset cannot take
    /// fails the whole file.
    pub fn new(dataset: &Dataset, header: &[String], limits: Limits) -> Result<Self, HeaderError> {
        if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
            return Err(HeaderError::Empty);
        }
        if header.len() > limits.max_columns {
            return Err(HeaderError::TooManyColumns {
                found: header.len(),
                max: limits.max_columns,
            });
        }
        let mut seen = HashSet::new();
        let mut slots = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = raw.trim();
            if name.is_empty() {
                return Err(HeaderError::BlankName { position: i + 1 });
            }
            if !seen.insert(name) {
                return Err(HeaderError::Duplicate { name: name.to_owned() });
            }
            let slot = if dataset.is_untyped() {
                Slot {
                    name: name.to_owned(),
                    ty: ColumnType::String,
                    required: false,
                }
            } else {
                let col = dataset.column(name).ok_or_else(|| HeaderError::UnknownColumn {
                    name: name.to_owned(),
                    dataset: dataset.name.clone(),
                    declared: dataset.columns.iter().map(|c| c.name.clone()).collect(),
                })?;
                Slot {
                    name: col.name.clone(),
                    ty: col.ty,
                    required: col.required,
                }
            };
            slots.push(slot);
        }
        let missing: Vec<String> = dataset
            .columns
            .iter()
            .filter(|c| c.required && !seen.contains(c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(HeaderError::MissingColumns {
                missing,
                dataset: dataset.name.clone(),
            });
        }
        Ok(RowValidator {
            slots,
            limits,
            keep_empty: dataset.is_untyped(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Validate one record, given as raw fields (bytes, not yet UTF-8 checked),
    /// into a map of column name to canonical text.
    pub fn validate<'a, I>(&self, fields: I) -> Result<Fields, Rejection>
    where
        I: ExactSizeIterator<Item = &'a [u8]>,
    {
        let mut out = Fields::new();
        self.validate_each(fields, |name, value| {
            out.insert(name.to_owned(), value);
        })?;
        Ok(out)
    }

    /// Validate one record, handing each present field (column name, canonical
    /// text) to `emit`: the ingest builds its items this way without an
    /// intermediate map. Nothing is emitted past the first bad field, but the
    /// caller must discard what was emitted if an error is returned.
    pub fn validate_each<'a, I>(&self, fields: I, mut emit: impl FnMut(&str, String)) -> Result<(), Rejection>
    where
        I: ExactSizeIterator<Item = &'a [u8]>,
    {
        if fields.len() != self.slots.len() {
            let n = fields.len();
            if n > self.limits.max_columns {
                return Err(Rejection::line(format!(
                    "line has {n} fields, more than the limit of {}",
                    self.limits.max_columns
                )));
            }
            return Err(Rejection::line(format!(
                "ragged line: {n} field{} where the header has {}",
                if n == 1 { "" } else { "s" },
                self.slots.len()
            )));
        }
        for (slot, raw) in self.slots.iter().zip(fields) {
            let text = std::str::from_utf8(raw).map_err(|e| {
                Rejection::column(
                    &slot.name,
                    format!("invalid UTF-8 at byte {} of the field", e.valid_up_to()),
                )
            })?;
            let value = if slot.ty == ColumnType::String {
                text
            } else {
                text.trim()
            };
            if value.is_empty() {
                if slot.required {
                    return Err(Rejection::column(
                        &slot.name,
                        format!("required column {:?} is empty", slot.name),
                    ));
                }
                if !self.keep_empty {
                    continue;
                }
            }
            let canonical = if slot.ty == ColumnType::String {
                value.to_owned()
            } else {
                slot.ty
                    .parse(value)
                    .map_err(|reason| Rejection::column(&slot.name, format!("column {:?}: {reason}", slot.name)))?
                    .canonical()
            };
            emit(&slot.name, canonical);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Registry;

    fn orders() -> Dataset {
        Registry::builtin().get("orders").unwrap().clone()
    }

    fn header(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    const HEADER: &str =
        "order_id,ordered_at,customer_id,country,sku,category,quantity,unit_price,currency,discount,gift";

    fn check(line: &str) -> Result<Fields, Rejection> {
        let v = RowValidator::new(&orders(), &header(HEADER), Limits::default()).unwrap();
        let fields: Vec<&[u8]> = line.split(',').map(str::as_bytes).collect();
        v.validate(fields.into_iter())
    }

    #[test]
    fn accepts_a_good_line_in_canonical_form() {
        let f = check("o-1,2024-01-02 03:04:05,c-9,DE,SKU-1,books, 2 ,12.50,EUR,,yes").unwrap();
        assert_eq!(f["quantity"], "2");
        assert_eq!(f["unit_price"], "12.50");
        assert_eq!(f["ordered_at"], "2024-01-02T03:04:05Z");
        assert_eq!(f["gift"], "true");
        assert!(!f.contains_key("discount"), "empty optional is absent");
    }

    #[test]
    fn rejects_with_column_and_reason() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                "o-1,2024-01-02 03:04:05,c-9,DE,SKU-1,books,two,12.50,EUR,,",
                Some("quantity"),
                "not an integer",
            ),
            (
                "o-1,2024-01-02 03:04:05,c-9,DE,SKU-1,books,2,12.5x,EUR,,",
                Some("unit_price"),
                "not a decimal",
            ),
            (
                "o-1,2024-13-02 03:04:05,c-9,DE,SKU-1,books,2,12.50,EUR,,",
                Some("ordered_at"),
                "not a timestamp",
            ),
            (
                "o-1,2024-01-02 03:04:05,,DE,SKU-1,books,2,12.50,EUR,,",
                Some("customer_id"),
                "is empty",
            ),
            (
                "o-1,2024-01-02 03:04:05,c-9,DE,SKU-1,books,2,12.50,EUR,,perhaps",
                Some("gift"),
                "not a boolean",
            ),
            (
                "o-1,2024-01-02 03:04:05,c-9,DE",
                None,
                "ragged line: 4 fields where the header has 11",
            ),
        ];
        for (line, col, want) in cases {
            let r = check(line).expect_err(line);
            assert_eq!(r.column.as_deref(), *col, "{line}");
            assert!(r.reason.contains(want), "{line}: {}", r.reason);
        }
    }

    #[test]
    fn rejects_invalid_utf8() {
        let v = RowValidator::new(&orders(), &header(HEADER), Limits::default()).unwrap();
        let mut fields: Vec<&[u8]> = "o-1,2024-01-02 03:04:05,c-9,DE,SKU-1,books,2,12.50,EUR,,"
            .split(',')
            .map(str::as_bytes)
            .collect();
        fields[5] = b"bo\xffoks";
        let r = v.validate(fields.into_iter()).unwrap_err();
        assert_eq!(r.column.as_deref(), Some("category"));
        assert!(r.reason.contains("invalid UTF-8 at byte 2"), "{}", r.reason);
    }

    #[test]
    fn header_problems_fail_the_file() {
        let ds = orders();
        let l = Limits::default();
        let missing = RowValidator::new(&ds, &header("order_id,ordered_at"), l).unwrap_err();
        assert!(missing.to_string().contains("missing required column"), "{missing}");
        assert!(missing.to_string().contains("unit_price"), "{missing}");
        let unknown = RowValidator::new(&ds, &header(&format!("{HEADER},colour")), l).unwrap_err();
        assert!(unknown.to_string().contains("unknown column \"colour\""), "{unknown}");
        let dup = RowValidator::new(&ds, &header(&format!("{HEADER},gift")), l).unwrap_err();
        assert!(dup.to_string().contains("twice"), "{dup}");
        assert!(matches!(
            RowValidator::new(&ds, &[String::new()], l),
            Err(HeaderError::Empty)
        ));
        let wide = RowValidator::new(&ds, &header(HEADER), Limits { max_columns: 3, ..l }).unwrap_err();
        assert!(wide.to_string().contains("11 columns"), "{wide}");
    }

    #[test]
    fn header_order_is_free_and_names_are_trimmed() {
        let shuffled =
            " gift ,discount,currency,unit_price,quantity,category,sku,country,customer_id,ordered_at,order_id";
        let v = RowValidator::new(&orders(), &header(shuffled), Limits::default()).unwrap();
        let f = v
            .validate(
                [
                    "",
                    "",
                    "EUR",
                    "1.00",
                    "3",
                    "toys",
                    "S",
                    "FR",
                    "c",
                    "2024-01-01T00:00:00Z",
                    "o",
                ]
                .map(str::as_bytes)
                .into_iter(),
            )
            .unwrap();
        assert_eq!(f["order_id"], "o");
        assert_eq!(f["quantity"], "3");
    }

    #[test]
    fn untyped_keeps_every_field_as_text() {
        let v = RowValidator::new(&Dataset::untyped(), &header("a,b"), Limits::default()).unwrap();
        let f = v.validate([&b" x "[..], b""].into_iter()).unwrap();
        assert_eq!(f["a"], " x ");
        assert_eq!(f["b"], "", "an empty field is the row's too, named by its header");
        assert_eq!(f.len(), 2);
    }
}
