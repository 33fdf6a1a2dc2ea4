//! The projector's configuration, read once from the environment Terraform
//! sets on the Lambda function.

/// Where the projector writes. Every field has an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `AGGREGATES_TABLE`: the aggregates table (groups and applied pages).
    pub aggregates_table: String,
    /// `FEED_TOPIC_ARN`: the change feed's SNS topic.
    pub feed_topic_arn: String,
}

/// A variable that is missing (or empty: an empty name reaches no resource).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl Config {
    /// Read from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read from any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name).filter(|v| !v.is_empty()).ok_or(ConfigError {
                name,
                problem: "not set",
            })
        };
        Ok(Config {
            aggregates_table: required("AGGREGATES_TABLE")?,
            feed_topic_arn: required("FEED_TOPIC_ARN")?,
        })
    }
}

/// The environment variables the projector Lambda reads (besides those
/// Lambda itself sets), for the deployment check: what [`Config::from_env`]
/// reads, and the log filter.
pub const ENV_VARS: &[&str] = &["AGGREGATES_TABLE", "FEED_TOPIC_ARN", "RUST_LOG"];

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn reads_both_variables_and_names_a_missing_one() {
        let c = Config::from_lookup(env(&[("AGGREGATES_TABLE", "t"), ("FEED_TOPIC_ARN", "q")])).unwrap();
        assert_eq!((c.aggregates_table.as_str(), c.feed_topic_arn.as_str()), ("t", "q"));
        let e = Config::from_lookup(env(&[("FEED_TOPIC_ARN", "q")])).unwrap_err();
        assert_eq!(e.name, "AGGREGATES_TABLE");
        assert!(e.to_string().contains("AGGREGATES_TABLE"), "{e}");
        let e = Config::from_lookup(env(&[("AGGREGATES_TABLE", "t"), ("FEED_TOPIC_ARN", "")])).unwrap_err();
        assert!(
            e.to_string().contains("FEED_TOPIC_ARN"),
            "an empty value is missing: {e}"
        );
    }

    #[test]
    fn env_vars_lists_exactly_what_is_read_and_the_log_filter() {
        let asked = RefCell::new(BTreeSet::new());
        Config::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_owned());
            Some("x".to_owned())
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.insert("RUST_LOG".to_owned());
        let listed: BTreeSet<String> = ENV_VARS.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(asked, listed);
    }
}
