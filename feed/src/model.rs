//! Apply-if-newer: a read model that keeps, per aggregate group, the state of
//! the highest `version` it has seen. Duplicates and late (reordered)
//! messages carry a version it already holds or has passed, so applying
//! them changes nothing: correct by construction on an at-least-once,
//! unordered feed.

use std::collections::BTreeMap;

use schema::feed::FeedMessage;
use schema::AggregateItem;

/// Which group: dataset, aggregate, and group-by term to value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by term to value.
    pub group: BTreeMap<String, String>,
}

impl GroupKey {
    /// One string per group, for a read model's key: dataset, aggregate and
    /// the group as JSON with sorted terms, `#`-separated.
    pub fn id(&self) -> String {
        let group = serde_json::to_string(&self.group).expect("string maps serialize");
        format!("{}#{}#{}", self.dataset, self.aggregate, group)
    }
}

/// A group's state at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// Which group.
    pub key: GroupKey,
    /// Measure to value (counts and exact decimals, as text).
    pub values: BTreeMap<String, String>,
    /// The group's version: grows by one with each change.
    pub version: u64,
    /// When the group changed (RFC 3339).
    pub changed_at: String,
}

impl GroupState {
    /// The state an `aggregate.changed` message carries; `None` for other types.
    pub fn of_message(m: &FeedMessage) -> Option<Self> {
        match m {
            FeedMessage::AggregateChanged {
                dataset,
                aggregate,
                group,
                values,
                version,
                changed_at,
                ..
            } => Some(GroupState {
                key: GroupKey {
                    dataset: dataset.clone(),
                    aggregate: aggregate.clone(),
                    group: group.clone(),
                },
                values: values.clone(),
                version: *version,
                changed_at: changed_at.clone(),
            }),
            FeedMessage::FileCompleted { .. } => None,
        }
    }

    /// The state of a group as the aggregates table holds it (a snapshot).
    pub fn of_item(a: AggregateItem) -> Self {
        GroupState {
            key: GroupKey {
                dataset: a.dataset,
                aggregate: a.aggregate,
                group: a.group,
            },
            values: a.measures,
            version: a.version,
            changed_at: a.updated_at,
        }
    }
}

/// What applying a state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state was newer and is now held.
    Written,
    /// The model already held this version or a later one: nothing changed.
    Stale,
}

/// Keep, of several states, the newest of each group, in first-seen order:
/// a batch's writes, one per group.
pub fn newest_per_group(states: impl IntoIterator<Item = GroupState>) -> Vec<GroupState> {
    let mut order: Vec<GroupKey> = Vec::new();
    let mut newest: BTreeMap<GroupKey, GroupState> = BTreeMap::new();
    for s in states {
        match newest.get_mut(&s.key) {
            Some(held) if held.version >= s.version => {}
            Some(held) => *held = s,
            None => {
                order.push(s.key.clone());
                newest.insert(s.key.clone(), s);
            }
        }
    }
    order.into_iter().filter_map(|k| newest.remove(&k)).collect()
}

/// An in-memory read model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModel {
    groups: BTreeMap<GroupKey, GroupState>,
}

impl ReadModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hold `s` if its version is newer than the group's.
    pub fn apply(&mut self, s: GroupState) -> Applied {
        match self.groups.get(&s.key) {
            Some(held) if held.version >= s.version => Applied::Stale,
            _ => {
                self.groups.insert(s.key.clone(), s);
                Applied::Written
            }
        }
    }

    /// The held state of a group.
    pub fn get(&self, key: &GroupKey) -> Option<&GroupState> {
        self.groups.get(key)
    }

    /// Every group, in key order.
    pub fn groups(&self) -> impl Iterator<Item = &GroupState> {
        self.groups.values()
    }

    /// How many groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether it holds no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

impl FromIterator<GroupState> for ReadModel {
    fn from_iter<I: IntoIterator<Item = GroupState>>(iter: I) -> Self {
        let mut m = ReadModel::new();
        for s in iter {
            m.apply(s);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(country: &str, version: u64, orders: &str) -> GroupState {
        GroupState {
            key: GroupKey {
                dataset: "orders".into(),
                aggregate: "by_country".into(),
                group: BTreeMap::from([("country".into(), country.into())]),
            },
            values: BTreeMap::from([("orders".into(), orders.into())]),
            version,
            changed_at: String::new(),
        }
    }

    #[test]
    fn any_order_and_any_repetition_ends_at_the_newest() {
        let updates = [
            state("DE", 1, "1"),
            state("DE", 2, "2"),
            state("FR", 1, "5"),
            state("DE", 3, "3"),
        ];
        let mut want = ReadModel::new();
        for u in &updates {
            assert_eq!(want.apply(u.clone()), Applied::Written);
        }
        // Every rotation, reversed, and each message twice.
        for shift in 0..updates.len() {
            let mut order: Vec<GroupState> = updates.iter().cycle().skip(shift).take(4).cloned().collect();
            order.reverse();
            order.extend(order.clone());
            let m: ReadModel = order.into_iter().collect();
            assert_eq!(m, want, "shift {shift}");
        }
        let mut m = want.clone();
        assert_eq!(m.apply(state("DE", 3, "3")), Applied::Stale, "a duplicate");
        assert_eq!(m.apply(state("DE", 2, "2")), Applied::Stale, "a late one");
        assert_eq!(m.get(&state("DE", 0, "").key).unwrap().values["orders"], "3");
    }

    #[test]
    fn a_batch_writes_each_group_once_at_its_newest() {
        let got = newest_per_group([
            state("DE", 2, "2"),
            state("FR", 1, "5"),
            state("DE", 3, "3"),
            state("DE", 1, "1"),
        ]);
        assert_eq!(got, vec![state("DE", 3, "3"), state("FR", 1, "5")]);
    }

    #[test]
    fn the_key_id_tells_groups_apart() {
        let a = state("DE", 1, "").key;
        let mut b = a.clone();
        b.group.insert("city".into(), "Berlin".into());
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), r#"orders#by_country#{"country":"DE"}"#);
    }
}
