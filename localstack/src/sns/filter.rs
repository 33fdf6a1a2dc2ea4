//! Subscription filter policies: which published messages a subscription
//! receives. Checked when set (as SNS refuses a malformed policy) and
//! matched on each publish.
//!
//! Emulated: exact strings and numbers, `prefix`, `suffix`,
//! `equals-ignore-case`, `anything-but` (values, a prefix or a suffix),
//! `exists`, `numeric` comparisons and ranges, and `$or`; on message
//! attributes (`String`, `Number`, `String.Array`) or, with
//! `FilterPolicyScope` `MessageBody`, on the JSON body. Not emulated:
//! `cidr`, and nested `$or` below the top level of a body policy.

use serde_json::{Map, Value};

/// SNS's limits: keys in a policy and combinations of its values.
const MAX_KEYS: usize = 5;
const MAX_COMBINATIONS: usize = 150;

/// A value to match: what a message attribute or a body field holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean (in arrays and bodies).
    Bool(bool),
    /// JSON null (in arrays and bodies).
    Null,
}

impl Scalar {
    /// The values a JSON value offers: an array offers each element.
    pub fn of_json(v: &Value) -> Vec<Scalar> {
        match v {
            Value::String(s) => vec![Scalar::Str(s.clone())],
            Value::Number(n) => vec![Scalar::Num(n.as_f64().unwrap_or(f64::NAN))],
            Value::Bool(b) => vec![Scalar::Bool(*b)],
            Value::Null => vec![Scalar::Null],
            Value::Array(a) => a.iter().flat_map(Scalar::of_json).collect(),
            Value::Object(_) => vec![],
        }
    }

    /// The values a message attribute offers to a policy: a `String.Array`
    /// offers each element; a `Binary` attribute offers none.
    pub fn of_attribute(data_type: &str, value: &str) -> Vec<Scalar> {
        match data_type.split('.').next().unwrap_or_default() {
            "Number" => vec![Scalar::Num(value.parse().unwrap_or(f64::NAN))],
            "String" if data_type == "String.Array" => serde_json::from_str::<Value>(value)
                .map(|v| Scalar::of_json(&v))
                .unwrap_or_default(),
            "String" => vec![Scalar::Str(value.to_owned())],
            _ => vec![],
        }
    }
}

/// Where a policy looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Message attributes (SNS's default).
    MessageAttributes,
    /// The message body, parsed as JSON.
    MessageBody,
}

impl Scope {
    /// From the `FilterPolicyScope` attribute.
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("MessageAttributes") => Ok(Scope::MessageAttributes),
            Some("MessageBody") => Ok(Scope::MessageBody),
            Some(other) => Err(format!(
                "FilterPolicyScope: Invalid value [{other}]. Please use either MessageBody or MessageAttributes"
            )),
        }
    }
}

/// Check a policy as SNS does when it is set; the error is SNS's kind of message.
pub fn validate(policy: &str, scope: Scope) -> Result<Value, String> {
    let v: Value = serde_json::from_str(policy).map_err(|e| format!("FilterPolicy: failed to parse JSON. {e}"))?;
    let obj = v
        .as_object()
        .ok_or("FilterPolicy: Filter policy must be a JSON object")?;
    let mut keys = 0;
    let combinations = check_object(obj, scope, &mut keys)?;
    if keys > MAX_KEYS {
        return Err(format!(
            "FilterPolicy: Filter policy can not have more than {MAX_KEYS} keys"
        ));
    }
    if combinations > MAX_COMBINATIONS {
        return Err(format!(
            "FilterPolicy: Filter policy is too complex ({combinations} combinations, at most {MAX_COMBINATIONS})"
        ));
    }
    Ok(v)
}

/// Returns the number of value combinations the object admits.
fn check_object(obj: &Map<String, Value>, scope: Scope, keys: &mut usize) -> Result<usize, String> {
    if obj.is_empty() {
        return Err("FilterPolicy: Filter policy can not be empty".to_owned());
    }
    let mut combinations = 1usize;
    for (k, v) in obj {
        let c = if k == "$or" {
            let alternatives = v
                .as_array()
                .filter(|a| a.len() >= 2)
                .ok_or("FilterPolicy: $or must be an array of at least two policies")?;
            let mut sum = 0;
            for a in alternatives {
                let o = a
                    .as_object()
                    .ok_or("FilterPolicy: each $or alternative must be an object")?;
                sum += check_object(o, scope, keys)?;
            }
            sum
        } else {
            match v {
                Value::Array(conditions) => {
                    *keys += 1;
                    if conditions.is_empty() {
                        return Err(format!("FilterPolicy: Empty arrays are not allowed ({k})"));
                    }
                    for c in conditions {
                        check_condition(k, c)?;
                    }
                    conditions.len()
                }
                Value::Object(nested) if scope == Scope::MessageBody => check_object(nested, scope, keys)?,
                _ => return Err(format!("FilterPolicy: \"{k}\" must be an array of match conditions")),
            }
        };
        combinations = combinations.saturating_mul(c);
    }
    Ok(combinations)
}

fn check_condition(key: &str, c: &Value) -> Result<(), String> {
    let bad = |why: &str| Err(format!("FilterPolicy: {key}: {why}"));
    let Value::Object(op) = c else {
        return Ok(()); // a literal
    };
    if op.len() != 1 {
        return bad("a match condition object has exactly one operator");
    }
    let (name, arg) = op.iter().next().expect("one entry");
    match (name.as_str(), arg) {
        ("prefix" | "suffix" | "equals-ignore-case", Value::String(_)) => Ok(()),
        ("exists", Value::Bool(_)) => Ok(()),
        ("anything-but", Value::String(_) | Value::Number(_)) => Ok(()),
        ("anything-but", Value::Array(a)) if !a.is_empty() && a.iter().all(|v| v.is_string() || v.is_number()) => {
            Ok(())
        }
        ("anything-but", Value::Object(inner))
            if inner.len() == 1
                && matches!(inner.iter().next(), Some((k, Value::String(_))) if k == "prefix" || k == "suffix") =>
        {
            Ok(())
        }
        ("numeric", Value::Array(a)) => check_numeric(a).or_else(|e| bad(&e)),
        ("cidr", _) => bad("cidr matching is not emulated"),
        (op, _) => bad(&format!("Unrecognized match type or bad argument for {op}")),
    }
}

fn check_numeric(a: &[Value]) -> Result<(), String> {
    let ok = match a {
        [Value::String(op), Value::Number(_)] => ["=", "<", "<=", ">", ">="].contains(&op.as_str()),
        [Value::String(lo), Value::Number(_), Value::String(hi), Value::Number(_)] => {
            [">", ">="].contains(&lo.as_str()) && ["<", "<="].contains(&hi.as_str())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("numeric takes [op, n] or [>|>=, n, <|<=, n]".to_owned())
    }
}

/// Whether a validated policy admits a message whose attributes (or body
/// fields) `lookup` gives: `None` when absent.
pub fn matches(policy: &Value, lookup: &dyn Fn(&[&str]) -> Option<Vec<Scalar>>) -> bool {
    policy.as_object().is_some_and(|o| object_matches(o, &[], lookup))
}

fn object_matches(obj: &Map<String, Value>, path: &[&str], lookup: &dyn Fn(&[&str]) -> Option<Vec<Scalar>>) -> bool {
    obj.iter().all(|(k, v)| {
        if k == "$or" {
            return v.as_array().is_some_and(|alts| {
                alts.iter()
                    .filter_map(Value::as_object)
                    .any(|o| object_matches(o, path, lookup))
            });
        }
        let mut here = path.to_vec();
        here.push(k);
        match v {
            Value::Array(conditions) => {
                let found = lookup(&here);
                conditions.iter().any(|c| condition_matches(c, found.as_deref()))
            }
            Value::Object(nested) => object_matches(nested, &here, lookup),
            _ => false,
        }
    })
}

fn condition_matches(c: &Value, found: Option<&[Scalar]>) -> bool {
    let Value::Object(op) = c else {
        let want = Scalar::of_json(c);
        return found.is_some_and(|vals| vals.iter().any(|v| want.contains(v)));
    };
    let Some((name, arg)) = op.iter().next() else {
        return false;
    };
    if name == "exists" {
        return arg.as_bool() == Some(found.is_some());
    }
    let Some(vals) = found else {
        return false;
    };
    let strings = || {
        vals.iter()
            .filter_map(|v| if let Scalar::Str(s) = v { Some(s.as_str()) } else { None })
    };
    match (name.as_str(), arg) {
        ("prefix", Value::String(p)) => strings().any(|s| s.starts_with(p.as_str())),
        ("suffix", Value::String(p)) => strings().any(|s| s.ends_with(p.as_str())),
        ("equals-ignore-case", Value::String(p)) => strings().any(|s| s.eq_ignore_ascii_case(p)),
        // An array matches if any of its values is not excluded (SNS's
        // "String value matching": ["rugby","baseball"] matches
        // anything-but ["rugby","tennis"]).
        ("anything-but", Value::Object(inner)) => match inner.iter().next() {
            Some((k, Value::String(p))) if k == "prefix" => strings().any(|s| !s.starts_with(p.as_str())),
            Some((k, Value::String(p))) if k == "suffix" => strings().any(|s| !s.ends_with(p.as_str())),
            _ => false,
        },
        ("anything-but", excluded) => {
            let excluded = Scalar::of_json(excluded);
            vals.iter().any(|v| !excluded.contains(v))
        }
        ("numeric", Value::Array(a)) => vals.iter().any(|v| match v {
            Scalar::Num(n) => a.chunks(2).all(|pair| match pair {
                [Value::String(op), Value::Number(bound)] => {
                    let b = bound.as_f64().unwrap_or(f64::NAN);
                    match op.as_str() {
                        "=" => *n == b,
                        "<" => *n < b,
                        "<=" => *n <= b,
                        ">" => *n > b,
                        ">=" => *n >= b,
                        _ => false,
                    }
                }
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn attrs(pairs: &[(&str, &str, &str)]) -> impl Fn(&[&str]) -> Option<Vec<Scalar>> {
        let m: BTreeMap<String, (String, String)> = pairs
            .iter()
            .map(|(k, t, v)| ((*k).to_owned(), ((*t).to_owned(), (*v).to_owned())))
            .collect();
        move |path: &[&str]| m.get(path[0]).map(|(t, v)| Scalar::of_attribute(t, v))
    }

    fn admits(policy: &str, pairs: &[(&str, &str, &str)]) -> bool {
        let p = validate(policy, Scope::MessageAttributes).unwrap();
        matches(&p, &attrs(pairs))
    }

    #[test]
    fn the_feed_filters() {
        let p = r#"{"type":["aggregate.changed"],"dataset":["orders","shops"]}"#;
        assert!(admits(
            p,
            &[("type", "String", "aggregate.changed"), ("dataset", "String", "orders")]
        ));
        assert!(!admits(
            p,
            &[("type", "String", "file.completed"), ("dataset", "String", "orders")]
        ));
        assert!(!admits(
            p,
            &[("type", "String", "aggregate.changed"), ("dataset", "String", "users")]
        ));
        assert!(
            !admits(p, &[("type", "String", "aggregate.changed")]),
            "a missing attribute matches nothing"
        );
    }

    #[test]
    fn operators() {
        fn s(v: &str) -> [(&str, &str, &str); 1] {
            [("a", "String", v)]
        }
        assert!(admits(r#"{"a":[{"prefix":"agg"}]}"#, &s("aggregate")));
        assert!(admits(r#"{"a":[{"suffix":"ate"}]}"#, &s("aggregate")));
        assert!(admits(r#"{"a":[{"equals-ignore-case":"AGG"}]}"#, &s("agg")));
        assert!(admits(r#"{"a":[{"anything-but":["x","y"]}]}"#, &s("z")));
        assert!(!admits(r#"{"a":[{"anything-but":"z"}]}"#, &s("z")));
        assert!(!admits(r#"{"a":[{"anything-but":{"prefix":"z"}}]}"#, &s("zz")));
        assert!(!admits(r#"{"a":[{"anything-but":"z"}]}"#, &[]), "absent");
        let sports = [("a", "String.Array", r#"["rugby","baseball"]"#)];
        assert!(admits(r#"{"a":[{"anything-but":["rugby","tennis"]}]}"#, &sports));
        assert!(!admits(r#"{"a":[{"anything-but":["rugby","baseball"]}]}"#, &sports));
        assert!(admits(r#"{"b":[{"exists":false}]}"#, &s("z")));
        assert!(!admits(r#"{"a":[{"exists":false}]}"#, &s("z")));
        fn n(v: &str) -> [(&str, &str, &str); 1] {
            [("a", "Number", v)]
        }
        assert!(admits(r#"{"a":[{"numeric":[">",0,"<=",5]}]}"#, &n("5")));
        assert!(!admits(r#"{"a":[{"numeric":[">",0,"<=",5]}]}"#, &n("5.5")));
        assert!(admits(r#"{"a":[5]}"#, &n("5.0")));
        assert!(
            !admits(r#"{"a":["5"]}"#, &n("5")),
            "a string condition does not match a number"
        );
        let arr = [("a", "String.Array", r#"["x", 3, true]"#)];
        assert!(admits(r#"{"a":["x"]}"#, &arr));
        assert!(admits(r#"{"a":[3]}"#, &arr));
        assert!(!admits(r#"{"a":["y"]}"#, &arr));
        assert!(admits(r#"{"$or":[{"a":["q"]},{"b":["r"]}]}"#, &[("b", "String", "r")]));
    }

    #[test]
    fn the_body_scope_follows_nesting() {
        let p = validate(
            r#"{"type":["file.completed"],"x":{"y":[{"numeric":[">=",2]}]}}"#,
            Scope::MessageBody,
        )
        .unwrap();
        let body: Value = serde_json::from_str(r#"{"type":"file.completed","x":{"y":3}}"#).unwrap();
        let lookup = |path: &[&str]| {
            let mut v = &body;
            for k in path {
                v = v.get(k)?;
            }
            Some(Scalar::of_json(v))
        };
        assert!(matches(&p, &lookup));
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            "not json",
            "[]",
            "{}",
            r#"{"a":"x"}"#,
            r#"{"a":[]}"#,
            r#"{"a":[{"prefix":1}]}"#,
            r#"{"a":[{"numeric":["<",1,">",2]}]}"#,
            r#"{"a":[{"cidr":"10.0.0.0/24"}]}"#,
            r#"{"a":{"b":["x"]}}"#,
            r#"{"a":["1"],"b":["1"],"c":["1"],"d":["1"],"e":["1"],"f":["1"]}"#,
        ] {
            assert!(validate(bad, Scope::MessageAttributes).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..13).map(|i| format!("\"v{i}\"")).collect();
        let big = format!(r#"{{"a":[{0}],"b":[{0}]}}"#, many.join(","));
        assert!(validate(&big, Scope::MessageAttributes)
            .unwrap_err()
            .contains("complex"));
    }
}
