//! Item layouts of the aggregates table, read and written with `serde_dynamo`.
//!
//! Two kinds of item share the table, told apart by `kind` (and by their key's
//! prefix, see [`crate::keys`]):
//!
//! * [`AggregateItem`]: one group of one aggregate, its measures as exact
//!   text, and a version that grows by one with each write (the projector
//!   conditions every write on the version it read).
//! * [`AppliedPage`]: per page of 1,000 lines of a file, a bitmap of the lines
//!   already folded into the groups. The projector writes it in the same
//!   transaction as the groups, so a line's contribution and its bit change
//!   together or not at all.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ItemError;
use crate::items::to_item;
use crate::keys::{self, PAGE_SIZE};

/// What an item of the aggregates table is (its `kind` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregatesKind {
    /// One aggregate group: [`AggregateItem`].
    Aggregate,
    /// One page's applied bitmap: [`AppliedPage`].
    Applied,
}

impl AggregatesKind {
    /// The attribute value of this kind (for scan filters on `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            AggregatesKind::Aggregate => "aggregate",
            AggregatesKind::Applied => "applied",
        }
    }
}

/// One group of one aggregate, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateItem {
    /// [`keys::group_pk`] of `dataset`, `aggregate` and `group_values`.
    pub pk: String,
    /// Always [`AggregatesKind::Aggregate`].
    pub kind: AggregatesKind,
    /// The dataset.
    pub dataset: String,
    /// The aggregate (of the dataset's definition, or `file_stats`).
    pub aggregate: String,
    /// Group-by term to value, for readers that want names (empty when the
    /// terms were unknown to the writer).
    pub group: BTreeMap<String, String>,
    /// The group-by values in definition order: what the key is made of.
    pub group_values: Vec<String>,
    /// Measure name to value: a count or an exact decimal, as text.
    pub measures: BTreeMap<String, String>,
    /// 1 for the first write, one more with each change.
    pub version: u64,
    /// When it last changed (RFC 3339, milliseconds, UTC).
    pub updated_at: String,
}

/// The layout names in errors.
const GROUP_LAYOUT: &str = "an aggregate group";
const PAGE_LAYOUT: &str = "an applied page";

impl AggregateItem {
    /// A group's item; its key is derived from `dataset`, `aggregate` and
    /// `group_values`, and `group` pairs `group_terms` with the values.
    pub fn new(
        dataset: &str,
        aggregate: &str,
        group_terms: &[String],
        group_values: Vec<String>,
        measures: BTreeMap<String, String>,
        version: u64,
        updated_at: String,
    ) -> Self {
        AggregateItem {
            pk: keys::group_pk(dataset, aggregate, &group_values),
            kind: AggregatesKind::Aggregate,
            dataset: dataset.to_owned(),
            aggregate: aggregate.to_owned(),
            group: group_terms.iter().cloned().zip(group_values.iter().cloned()).collect(),
            group_values,
            measures,
            version,
            updated_at,
        }
    }

    /// The item to write.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        to_item(self)
    }

    /// Read a stored item back; fails on another kind of item.
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, ItemError> {
        let a: AggregateItem = decode(item, GROUP_LAYOUT)?;
        check_kind(&a.pk, a.kind, AggregatesKind::Aggregate, GROUP_LAYOUT)?;
        Ok(a)
    }
}

/// Bytes of one page's bitmap: one bit per line of the page.
pub const PAGE_BYTES: usize = (PAGE_SIZE as usize).div_ceil(8);

/// The lines of one page of a file already folded into the aggregates.
///
/// Line `l` is bit `l % 1000` of the page [`keys::page_of`]`(l)`: byte
/// `bit / 8`, mask `1 << (bit % 8)` (least significant bit first). The caller
/// picks the page of the line ([`keys::page_pk`]); a page only sees the
/// line's position within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPage {
    /// [`keys::page_pk`] of the file and page.
    pub pk: String,
    /// Always [`AggregatesKind::Applied`].
    pub kind: AggregatesKind,
    /// The bitmap, [`PAGE_BYTES`] long (a DynamoDB binary).
    #[serde(with = "serde_bytes")]
    pub bits: Vec<u8>,
    /// 1 for the first write, one more with each change; 0 for a page never
    /// written.
    pub version: u64,
}

impl AppliedPage {
    /// An empty page of a file (no line applied), not yet stored.
    pub fn new(file_id: &str, page: u64) -> Self {
        AppliedPage {
            pk: keys::page_pk(file_id, page),
            kind: AggregatesKind::Applied,
            bits: vec![0; PAGE_BYTES],
            version: 0,
        }
    }

    /// Where a line's bit is: its byte and mask.
    fn position(line: u64) -> (usize, u8) {
        let bit = (line % PAGE_SIZE) as usize;
        (bit / 8, 1 << (bit % 8))
    }

    /// Whether the line is already folded in.
    pub fn is_applied(&self, line: u64) -> bool {
        let (byte, mask) = Self::position(line);
        self.bits.get(byte).is_some_and(|b| b & mask != 0)
    }

    /// Mark the line folded in; `false` if it already was (nothing changes).
    pub fn mark(&mut self, line: u64) -> bool {
        let (byte, mask) = Self::position(line);
        if self.bits.len() < PAGE_BYTES {
            // A short bitmap is read as zeros past its end; it is written back whole.
            self.bits.resize(PAGE_BYTES, 0);
        }
        let was = self.bits[byte] & mask != 0;
        self.bits[byte] |= mask;
        !was
    }

    /// The item to write.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        to_item(self)
    }

    /// Read a stored item back; fails on another kind of item.
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, ItemError> {
        let p: AppliedPage = decode(item, PAGE_LAYOUT)?;
        check_kind(&p.pk, p.kind, AggregatesKind::Applied, PAGE_LAYOUT)?;
        Ok(p)
    }
}

fn decode<T: DeserializeOwned>(item: HashMap<String, AttributeValue>, layout: &'static str) -> Result<T, ItemError> {
    // The key, read first: the decode consumes the item, and the error should say which.
    let pk = item
        .get(keys::PK)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    serde_dynamo::from_item(item).map_err(|source| ItemError::Decode { pk, layout, source })
}

fn check_kind(pk: &str, found: AggregatesKind, want: AggregatesKind, layout: &'static str) -> Result<(), ItemError> {
    if found == want {
        return Ok(());
    }
    Err(ItemError::Kind {
        pk: pk.to_owned(),
        layout,
        found: found.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_owned())
    }

    fn group() -> AggregateItem {
        AggregateItem::new(
            "orders",
            "revenue_by_day_country",
            &["ordered_at:day".to_owned(), "country".to_owned()],
            vec!["2024-01-01".to_owned(), "DE".to_owned()],
            BTreeMap::from([
                ("orders".to_owned(), "2".to_owned()),
                ("revenue".to_owned(), "25.10".to_owned()),
            ]),
            3,
            "2024-01-02T03:04:05.678Z".to_owned(),
        )
    }

    /// The attributes, names and types the aggregates table already holds.
    #[test]
    fn an_aggregate_item_has_the_stored_layout_and_round_trips() {
        let a = group();
        let item = a.to_item();
        let want = HashMap::from([
            (
                "pk".to_owned(),
                s(r#"G#orders#revenue_by_day_country#["2024-01-01","DE"]"#),
            ),
            ("kind".to_owned(), s("aggregate")),
            ("dataset".to_owned(), s("orders")),
            ("aggregate".to_owned(), s("revenue_by_day_country")),
            (
                "group".to_owned(),
                AttributeValue::M(HashMap::from([
                    ("ordered_at:day".to_owned(), s("2024-01-01")),
                    ("country".to_owned(), s("DE")),
                ])),
            ),
            (
                "group_values".to_owned(),
                AttributeValue::L(vec![s("2024-01-01"), s("DE")]),
            ),
            (
                "measures".to_owned(),
                AttributeValue::M(HashMap::from([
                    ("orders".to_owned(), s("2")),
                    ("revenue".to_owned(), s("25.10")),
                ])),
            ),
            ("version".to_owned(), AttributeValue::N("3".to_owned())),
            ("updated_at".to_owned(), s("2024-01-02T03:04:05.678Z")),
        ]);
        assert_eq!(item, want);
        assert_eq!(AggregateItem::from_item(item).unwrap(), a);
    }

    #[test]
    fn a_group_without_terms_or_values_keeps_empty_attributes() {
        let a = AggregateItem::new("orders", "total", &[], vec![], BTreeMap::new(), 1, String::new());
        let item = a.to_item();
        assert_eq!(item["pk"], s("G#orders#total#[]"));
        assert_eq!(item["group"], AttributeValue::M(HashMap::new()));
        assert_eq!(item["group_values"], AttributeValue::L(vec![]));
        assert_eq!(AggregateItem::from_item(item).unwrap(), a);
    }

    #[test]
    fn decoding_the_wrong_item_says_which_and_why() {
        let page = AppliedPage::new("f", 0).to_item();
        let e = AggregateItem::from_item(page.clone()).unwrap_err();
        assert!(matches!(e, ItemError::Decode { ref pk, .. } if pk == "P#f#0"), "{e}");
        let mut item = group().to_item();
        item.insert("kind".to_owned(), s("applied"));
        let e = AggregateItem::from_item(item).unwrap_err();
        assert!(matches!(e, ItemError::Kind { found: "applied", .. }), "{e}");
        let mut bad = page;
        bad.insert("kind".to_owned(), s("aggregate"));
        assert!(matches!(AppliedPage::from_item(bad), Err(ItemError::Kind { .. })));
        let mut item = group().to_item();
        item.remove("measures");
        let e = AggregateItem::from_item(item).unwrap_err();
        assert!(
            e.to_string().contains("G#orders#revenue_by_day_country"),
            "the error names the item: {e}"
        );
        assert!(
            std::error::Error::source(&e).is_some(),
            "the serde error is kept as the source"
        );
    }

    #[test]
    fn an_applied_page_has_the_stored_layout_and_round_trips() {
        let mut p = AppliedPage::new("ab", 2);
        assert_eq!(p.pk, "P#ab#2");
        assert!(p.mark(2000) && p.mark(2999));
        p.version = 4;
        let item = p.to_item();
        assert_eq!(item.len(), 4, "{item:?}");
        assert_eq!(item["pk"], s("P#ab#2"));
        assert_eq!(item["kind"], s("applied"));
        assert_eq!(item["version"], AttributeValue::N("4".to_owned()));
        let bits = item["bits"].as_b().expect("the bitmap is a binary").as_ref().to_vec();
        assert_eq!(bits.len(), 125);
        assert_eq!((bits[0], bits[124]), (0b0000_0001, 0b1000_0000));
        assert!(bits[1..124].iter().all(|b| *b == 0));
        let back = AppliedPage::from_item(item).unwrap();
        assert_eq!(back, p);
        assert!(back.is_applied(2000) && back.is_applied(2999) && !back.is_applied(2001));
    }

    #[test]
    fn bits_at_the_edges_of_a_page() {
        let mut p = AppliedPage::new("f", 0);
        for line in [0, 7, 8, 999] {
            assert!(!p.is_applied(line), "line {line} starts clear");
            assert!(p.mark(line), "line {line} is newly marked");
            assert!(p.is_applied(line));
            assert!(!p.mark(line), "marking line {line} again changes nothing");
        }
        assert_eq!(p.bits[0], 0b1000_0001, "lines 0 and 7 share the first byte");
        assert_eq!(p.bits[1], 0b0000_0001, "line 8 starts the second");
        assert_eq!(p.bits[124], 0b1000_0000, "line 999 is the last bit");
        assert_eq!(p.bits.iter().map(|b| b.count_ones()).sum::<u32>(), 4);
        // The next page starts again at bit 0: line 1000 of page 1 is bit 0.
        let mut next = AppliedPage::new("f", keys::page_of(1000));
        assert_eq!(next.pk, "P#f#1");
        assert!(next.mark(1000));
        assert_eq!(next.bits[0], 1);
        assert!(next.is_applied(1000) && !next.is_applied(1001) && !next.is_applied(1999));
    }

    #[test]
    fn a_short_stored_bitmap_reads_as_clear_and_is_written_whole() {
        let mut p = AppliedPage::new("f", 0);
        p.bits.truncate(3);
        assert!(!p.is_applied(999));
        assert!(p.mark(999));
        assert_eq!(p.bits.len(), PAGE_BYTES);
        assert!(p.is_applied(999));
    }
}
