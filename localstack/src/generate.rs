//! Synthetic `orders` files: realistic values, a seed for repeatability, and
//! an optional share of bad lines of every kind the ingest must reject.

use std::io::{self, Write};

use chrono::{Duration, NaiveDate};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The `orders` header, in declaration order.
pub const HEADER: &str =
    "order_id,ordered_at,customer_id,country,sku,category,quantity,unit_price,currency,discount,gift";

const COUNTRIES: &[(&str, &str)] = &[
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("NL", "EUR"),
    ("GB", "GBP"),
    ("US", "USD"),
    ("SE", "SEK"),
];
const CATEGORIES: &[&str] = &["books", "toys", "garden", "kitchen", "electronics", "music"];

/// How the lines spread over time: the shape decides how many aggregate
/// groups a batch of events touches, so the projector's cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Orders at random times over a quarter (2024-01-01 to 2024-03-30), in
    /// no order: about one aggregate change per line.
    #[default]
    Spread,
    /// A daily export: one day's orders in time order (2024-01-01), as
    /// systems that export once a day write them.
    Ordered,
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Stop after this many lines...
    pub lines: Option<u64>,
    /// ...or once the file is at least this many bytes.
    pub bytes: Option<u64>,
    /// One line in `bad_every` is bad (0: none).
    pub bad_every: u64,
    /// Random seed.
    pub seed: u64,
    /// How the lines spread over time.
    pub shape: Shape,
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines after the header.
    pub lines: u64,
    /// Bad lines among them.
    pub bad: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Write an `orders` file.
pub fn orders(out: &mut impl Write, spec: Spec) -> io::Result<Stats> {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let start = NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("valid date")
        .and_hms_opt(0, 0, 0)
        .expect("valid time");
    let mut stats = Stats::default();
    let mut line = String::with_capacity(160);
    line.push_str(HEADER);
    line.push('\n');
    out.write_all(line.as_bytes())?;
    stats.bytes += line.len() as u64;
    loop {
        if spec.lines.is_some_and(|n| stats.lines >= n) || spec.bytes.is_some_and(|b| stats.bytes >= b) {
            break;
        }
        if spec.lines.is_none() && spec.bytes.is_none() {
            break;
        }
        stats.lines += 1;
        line.clear();
        let n = stats.lines;
        let (country, currency) = COUNTRIES[rng.gen_range(0..COUNTRIES.len())];
        let at = match spec.shape {
            Shape::Spread => start + Duration::seconds(rng.gen_range(0..90 * 86_400)),
            // Evenly through the day when the count is known; otherwise one
            // second apart, wrapping at midnight (a size-bound file).
            Shape::Ordered => match spec.lines {
                Some(total) => start + Duration::seconds(((n - 1) * 86_400 / total.max(1)) as i64),
                None => start + Duration::seconds(((n - 1) % 86_400) as i64),
            },
        };
        let qty: u32 = rng.gen_range(1..10);
        let cents: u32 = rng.gen_range(99..50_000);
        let discount = if rng.gen_bool(0.2) {
            format!("{}.{:02}", rng.gen_range(0..5), rng.gen_range(0..100))
        } else {
            String::new()
        };
        let gift = ["", "true", "false"][rng.gen_range(0..3)];
        let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let mut fields = [
            format!("o-{}-{n}", spec.seed),
            at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            format!("c-{}", rng.gen_range(1..5_000)),
            country.to_owned(),
            format!("SKU-{:05}", rng.gen_range(0..20_000)),
            category.to_owned(),
            qty.to_string(),
            format!("{}.{:02}", cents / 100, cents % 100),
            currency.to_owned(),
            discount,
            gift.to_owned(),
        ];
        if spec.bad_every > 0 && n % spec.bad_every == 0 {
            stats.bad += 1;
            match rng.gen_range(0..5) {
                0 => fields[6] = "many".into(),
                1 => fields[7] = "12,50".into(),
                2 => fields[1] = "31/12/2024".into(),
                3 => fields[2] = String::new(),
                _ => {
                    line.push_str(&fields[..5].join(","));
                    line.push('\n');
                    out.write_all(line.as_bytes())?;
                    stats.bytes += line.len() as u64;
                    continue;
                }
            }
        }
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            if f.contains(',') {
                line.push('"');
                line.push_str(f);
                line.push('"');
            } else {
                line.push_str(f);
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_what_it_says() {
        let spec = Spec {
            shape: Default::default(),
            lines: Some(100),
            bytes: None,
            bad_every: 10,
            seed: 7,
        };
        let mut buf = Vec::new();
        let s = orders(&mut buf, spec).unwrap();
        assert_eq!((s.lines, s.bad, s.bytes), (100, 10, buf.len() as u64));
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 101);
        let mut again = Vec::new();
        orders(&mut again, spec).unwrap();
        assert_eq!(buf, again, "same seed, same file");
    }

    #[test]
    fn an_ordered_export_is_one_day_in_time_order() {
        let spec = Spec {
            lines: Some(1_000),
            bytes: None,
            bad_every: 0,
            seed: 3,
            shape: Shape::Ordered,
        };
        let mut buf = Vec::new();
        orders(&mut buf, spec).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let times: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
        assert_eq!(times.len(), 1_000);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
        assert!(times.iter().all(|t| t.starts_with("2024-01-01T")), "one day");
        assert_ne!(times[0], times[999]);
    }
}
