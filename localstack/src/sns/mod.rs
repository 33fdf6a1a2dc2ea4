//! SNS for the local stack: topics whose subscriptions deliver to the local
//! SQS queues, over the query protocol the SDKs speak to SNS.
//!
//! Built here, not taken from crates.io: `awsim-sns` hands deliveries to
//! `awsim-core`'s event bus for `awsim-sqs` to pick up, and this stack's
//! queues are its own (see [`crate::sqs`]); see docs/local-stack.md, "Why
//! our own SNS". Emulated: topics and their attributes; `sqs` subscriptions
//! with raw delivery or the JSON envelope, filter policies on attributes or
//! body ([`filter`]); `Publish` and `PublishBatch` with SNS's limits (ten
//! entries, distinct ids, 256 KiB per call, ten attributes). A publish is
//! delivered to every subscribed queue in one SQLite transaction before
//! SNS answers: nothing acknowledged is lost, nothing is delivered twice.
//! Not emulated: FIFO topics, protocols other than `sqs`, access policies
//! (accepted, not enforced), delivery retries (a delivery to a queue that is
//! gone is dropped and logged, as SNS drops it after its retries).

pub mod filter;
pub mod query;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::identity::{ACCOUNT, REGION};
use crate::sqs::{DeliveredAttribute, Delivery, Sqs};
use filter::{Scalar, Scope};
use query::{Params, Xml};

/// SNS's limit on a message with its attributes, and on a whole batch.
const MAX_PAYLOAD: usize = 256 * 1024;
/// Most entries of a `PublishBatch`.
const MAX_BATCH: usize = 10;
/// Most message attributes SNS delivers to an SQS queue.
const MAX_ATTRIBUTES: usize = 10;
/// A page of a list.
const PAGE: usize = 100;

/// An SNS error: its code, status and whose fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsError {
    /// SNS's error code.
    pub code: &'static str,
    /// HTTP status.
    pub status: u16,
    /// The message.
    pub message: String,
}

impl SnsError {
    fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        SnsError {
            code,
            status,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameter", 400, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFound", 404, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", 500, message)
    }
}

impl std::fmt::Display for SnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SnsError {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Topic {
    attributes: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Subscription {
    topic_arn: String,
    protocol: String,
    endpoint: String,
    attributes: BTreeMap<String, String>,
    /// The parsed filter policy and its scope (derived from `attributes`).
    #[serde(skip)]
    filter: Option<(Value, Scope)>,
}

impl Subscription {
    fn refresh_filter(&mut self) -> Result<(), SnsError> {
        let scope =
            Scope::parse(self.attributes.get("FilterPolicyScope").map(String::as_str)).map_err(SnsError::invalid)?;
        self.filter = match self.attributes.get("FilterPolicy").filter(|p| !p.is_empty()) {
            Some(p) => Some((filter::validate(p, scope).map_err(SnsError::invalid)?, scope)),
            None => None,
        };
        Ok(())
    }

    /// The queue named by the `RedrivePolicy`'s `deadLetterTargetArn`.
    fn dead_letter_queue(&self) -> Option<String> {
        let policy: Value = serde_json::from_str(self.attributes.get("RedrivePolicy")?).ok()?;
        queue_name(policy.get("deadLetterTargetArn")?.as_str()?).map(str::to_owned)
    }

    fn raw(&self) -> bool {
        self.attributes.get("RawMessageDelivery").is_some_and(|v| v == "true")
    }

    fn admits(&self, m: &Outgoing) -> bool {
        let Some((policy, scope)) = &self.filter else {
            return true;
        };
        match scope {
            Scope::MessageAttributes => filter::matches(policy, &|path: &[&str]| {
                m.attributes
                    .get(path[0])
                    .map(|a| Scalar::of_attribute(&a.data_type, a.string_value.as_deref().unwrap_or_default()))
            }),
            Scope::MessageBody => {
                let Ok(body) = serde_json::from_str::<Value>(&m.message) else {
                    return false;
                };
                filter::matches(policy, &|path: &[&str]| {
                    let mut v = &body;
                    for k in path {
                        v = v.get(k)?;
                    }
                    // A key exists only with a non-null leaf value.
                    (!v.is_null() && !v.is_object()).then(|| Scalar::of_json(v))
                })
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Topics {
    topics: BTreeMap<String, Topic>,
    subscriptions: BTreeMap<String, Subscription>,
}

/// Writes an action's result element.
type Writer<'a> = Box<dyn FnOnce(&mut Xml) + 'a>;

/// Per entry of a batch: its id, and its message id or why it failed.
type BatchResults = (Vec<String>, Vec<Result<String, SnsError>>);

/// One message to publish.
#[derive(Debug, Clone)]
struct Outgoing {
    message: String,
    subject: Option<String>,
    attributes: BTreeMap<String, DeliveredAttribute>,
}

/// The emulator: topics and subscriptions (kept in `sns.json` beside the
/// queues), delivering into [`Sqs`].
pub struct Sns {
    topics: Mutex<Topics>,
    path: Option<PathBuf>,
    sqs: Arc<Sqs>,
    endpoint: String,
}

impl Sns {
    /// An emulator whose topics live in `path` (or in memory), delivering to `sqs`.
    pub fn open(path: Option<&Path>, sqs: Arc<Sqs>, endpoint: &str) -> Result<Arc<Self>, SnsError> {
        let mut topics: Topics = match path {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| SnsError::internal(format!("{}: {e}", p.display())))?;
                serde_json::from_str(&text).map_err(|e| SnsError::internal(format!("{}: {e}", p.display())))?
            }
            _ => Topics::default(),
        };
        for s in topics.subscriptions.values_mut() {
            s.refresh_filter()?;
        }
        Ok(Arc::new(Sns {
            topics: Mutex::new(topics),
            path: path.map(Path::to_path_buf),
            sqs,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        }))
    }

    /// The ARN of topic `name`.
    pub fn topic_arn(name: &str) -> String {
        format!("arn:aws:sns:{REGION}:{ACCOUNT}:{name}")
    }

    fn change<T>(&self, f: impl FnOnce(&mut Topics) -> Result<T, SnsError>) -> Result<T, SnsError> {
        let mut t = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = t.clone();
        let out = f(&mut next)?;
        if let Some(path) = &self.path {
            let tmp = path.with_extension("json.tmp");
            let text = serde_json::to_string_pretty(&next).expect("topics serialize");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| SnsError::internal(format!("saving {}: {e}", path.display())))?;
        }
        *t = next;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Topics) -> T) -> T {
        f(&self.topics.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn dispatch(&self, p: &Params) -> Result<(String, Writer<'_>), SnsError> {
        let action = p
            .get("Action")
            .ok_or_else(|| SnsError::new("MissingAction", 400, "No Action parameter"))?
            .to_owned();
        let body: Writer<'_> = match action.as_str() {
            "CreateTopic" => {
                let arn = self.create_topic(p)?;
                Box::new(move |x| {
                    x.leaf("TopicArn", &arn);
                })
            }
            "DeleteTopic" => {
                let arn = required(p, "TopicArn")?.to_owned();
                self.change(|t| {
                    t.topics.remove(&arn);
                    t.subscriptions.retain(|_, s| s.topic_arn != arn);
                    Ok(())
                })?;
                Box::new(|_| {})
            }
            "GetTopicAttributes" => {
                let attrs = self.topic_attributes(required(p, "TopicArn")?)?;
                Box::new(move |x| {
                    x.map("Attributes", &attrs);
                })
            }
            "SetTopicAttributes" => {
                let arn = required(p, "TopicArn")?.to_owned();
                let name = required(p, "AttributeName")?.to_owned();
                let value = p.get("AttributeValue").unwrap_or_default().to_owned();
                check_topic_attribute(&name, &value)?;
                self.change(|t| {
                    let topic = t.topics.get_mut(&arn).ok_or_else(|| no_topic(&arn))?;
                    topic.attributes.insert(name, value);
                    Ok(())
                })?;
                Box::new(|_| {})
            }
            "ListTopics" => {
                let (page, next) = self.read(|t| paged(t.topics.keys().cloned().collect(), p.get("NextToken")))?;
                Box::new(move |x| {
                    x.node("Topics", |l| {
                        for arn in &page {
                            l.node("member", |m| {
                                m.leaf("TopicArn", arn);
                            });
                        }
                    });
                    if let Some(n) = &next {
                        x.leaf("NextToken", n);
                    }
                })
            }
            "Subscribe" => {
                let arn = self.subscribe(p)?;
                Box::new(move |x| {
                    x.leaf("SubscriptionArn", &arn);
                })
            }
            "Unsubscribe" => {
                let arn = required(p, "SubscriptionArn")?.to_owned();
                self.change(|t| {
                    t.subscriptions
                        .remove(&arn)
                        .map(|_| ())
                        .ok_or_else(|| no_subscription(&arn))
                })?;
                Box::new(|_| {})
            }
            "GetSubscriptionAttributes" => {
                let arn = required(p, "SubscriptionArn")?;
                let attrs = self.read(|t| {
                    t.subscriptions
                        .get(arn)
                        .map(|s| subscription_attributes(arn, s))
                        .ok_or_else(|| no_subscription(arn))
                })?;
                Box::new(move |x| {
                    x.map("Attributes", &attrs);
                })
            }
            "SetSubscriptionAttributes" => {
                let arn = required(p, "SubscriptionArn")?.to_owned();
                let name = required(p, "AttributeName")?.to_owned();
                let value = p.get("AttributeValue").unwrap_or_default().to_owned();
                check_subscription_attribute(&name, &value)?;
                self.change(|t| {
                    let s = t.subscriptions.get_mut(&arn).ok_or_else(|| no_subscription(&arn))?;
                    s.attributes.insert(name, value);
                    s.refresh_filter()
                })?;
                Box::new(|_| {})
            }
            "ListSubscriptions" | "ListSubscriptionsByTopic" => {
                let topic = if action == "ListSubscriptionsByTopic" {
                    let arn = required(p, "TopicArn")?.to_owned();
                    if !self.read(|t| t.topics.contains_key(&arn)) {
                        return Err(no_topic(&arn));
                    }
                    Some(arn)
                } else {
                    None
                };
                let all: Vec<(String, Subscription)> = self.read(|t| {
                    t.subscriptions
                        .iter()
                        .filter(|(_, s)| topic.as_ref().is_none_or(|a| &s.topic_arn == a))
                        .map(|(a, s)| (a.clone(), s.clone()))
                        .collect()
                });
                let (page, next) = paged(all, p.get("NextToken"))?;
                Box::new(move |x| {
                    x.node("Subscriptions", |l| {
                        for (arn, s) in &page {
                            l.node("member", |m| {
                                m.leaf("SubscriptionArn", arn)
                                    .leaf("Owner", ACCOUNT)
                                    .leaf("Protocol", &s.protocol)
                                    .leaf("Endpoint", &s.endpoint)
                                    .leaf("TopicArn", &s.topic_arn);
                            });
                        }
                    });
                    if let Some(n) = &next {
                        x.leaf("NextToken", n);
                    }
                })
            }
            "Publish" => {
                let topic = p.get("TopicArn").or_else(|| p.get("TargetArn")).ok_or_else(|| {
                    SnsError::invalid(
                        "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter",
                    )
                })?;
                let m = outgoing(p)?;
                let id = self.publish(topic, vec![Ok(m)])?.remove(0)?;
                Box::new(move |x| {
                    x.leaf("MessageId", &id);
                })
            }
            "PublishBatch" => {
                let (ids, results) = self.publish_batch(p)?;
                Box::new(move |x| {
                    x.node("Successful", |l| {
                        for (id, r) in ids.iter().zip(&results) {
                            if let Ok(mid) = r {
                                l.node("member", |m| {
                                    m.leaf("Id", id).leaf("MessageId", mid);
                                });
                            }
                        }
                    });
                    x.node("Failed", |l| {
                        for (id, r) in ids.iter().zip(&results) {
                            if let Err(e) = r {
                                l.node("member", |m| {
                                    m.leaf("Id", id)
                                        .leaf("Code", e.code)
                                        .leaf("Message", &e.message)
                                        .leaf("SenderFault", if e.status < 500 { "true" } else { "false" });
                                });
                            }
                        }
                    });
                })
            }
            other => {
                return Err(SnsError::new(
                    "InvalidAction",
                    400,
                    format!("The action {other} is not valid for this endpoint (or not emulated)."),
                ))
            }
        };
        Ok((action, body))
    }

    fn create_topic(&self, p: &Params) -> Result<String, SnsError> {
        let name = required(p, "Name")?;
        let valid = !name.is_empty()
            && name.len() <= 256
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(SnsError::invalid(
                "Invalid parameter: Topic Name (1 to 256 of A-Z, a-z, 0-9, - and _; FIFO topics are not emulated)",
            ));
        }
        let attributes = p.map("Attributes");
        for (k, v) in &attributes {
            check_topic_attribute(k, v)?;
        }
        let tags: BTreeMap<String, String> = p
            .members("Tags")
            .into_iter()
            .map(|t| {
                (
                    t.get("Key").unwrap_or_default().to_owned(),
                    t.get("Value").unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let arn = Self::topic_arn(name);
        self.change(|t| match t.topics.get(&arn) {
            Some(existing) if existing.attributes != attributes && !attributes.is_empty() => Err(SnsError::invalid(
                "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
            )),
            Some(_) => Ok(arn.clone()),
            None => {
                t.topics.insert(arn.clone(), Topic { attributes, tags });
                Ok(arn.clone())
            }
        })
    }

    fn topic_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>, SnsError> {
        self.read(|t| {
            let topic = t.topics.get(arn).ok_or_else(|| no_topic(arn))?;
            let subscribed = t.subscriptions.values().filter(|s| s.topic_arn == arn).count();
            let mut a = BTreeMap::from([
                ("TopicArn".to_owned(), arn.to_owned()),
                ("Owner".to_owned(), ACCOUNT.to_owned()),
                ("DisplayName".to_owned(), String::new()),
                ("SubscriptionsConfirmed".to_owned(), subscribed.to_string()),
                ("SubscriptionsPending".to_owned(), "0".to_owned()),
                ("SubscriptionsDeleted".to_owned(), "0".to_owned()),
                ("Policy".to_owned(), default_policy(arn)),
            ]);
            a.extend(topic.attributes.clone());
            Ok(a)
        })
    }

    fn subscribe(&self, p: &Params) -> Result<String, SnsError> {
        let topic = required(p, "TopicArn")?.to_owned();
        let protocol = required(p, "Protocol")?.to_owned();
        let endpoint = p.get("Endpoint").unwrap_or_default().to_owned();
        if protocol != "sqs" {
            return Err(SnsError::invalid(format!(
                "Invalid parameter: Protocol {protocol} (this emulator delivers to sqs only)"
            )));
        }
        if queue_name(&endpoint).is_none() {
            return Err(SnsError::invalid(format!(
                "Invalid parameter: SQS endpoint ARN {endpoint:?} (arn:aws:sqs:{REGION}:{ACCOUNT}:<queue>)"
            )));
        }
        let attributes = p.map("Attributes");
        for (k, v) in &attributes {
            check_subscription_attribute(k, v)?;
        }
        let mut sub = Subscription {
            topic_arn: topic.clone(),
            protocol,
            endpoint,
            attributes,
            filter: None,
        };
        sub.refresh_filter()?;
        self.change(|t| {
            if !t.topics.contains_key(&topic) {
                return Err(no_topic(&topic));
            }
            let same = t.subscriptions.iter().find(|(_, s)| {
                s.topic_arn == sub.topic_arn && s.protocol == sub.protocol && s.endpoint == sub.endpoint
            });
            match same {
                // Only the attributes this request gives are compared.
                Some((arn, s)) if sub.attributes.iter().all(|(k, v)| s.attributes.get(k) == Some(v)) => Ok(arn.clone()),
                Some(_) => Err(SnsError::invalid(
                    "Invalid parameter: Attributes Reason: Subscription already exists with different attributes",
                )),
                None => {
                    let arn = format!("{topic}:{}", uuid::Uuid::new_v4());
                    t.subscriptions.insert(arn.clone(), sub);
                    Ok(arn)
                }
            }
        })
    }

    fn publish_batch(&self, p: &Params) -> Result<BatchResults, SnsError> {
        let topic = required(p, "TopicArn")?.to_owned();
        let entries = p.members("PublishBatchRequestEntries");
        if entries.is_empty() {
            return Err(SnsError::new(
                "EmptyBatchRequest",
                400,
                "The batch request doesn't contain any entries.",
            ));
        }
        if entries.len() > MAX_BATCH {
            return Err(SnsError::new(
                "TooManyEntriesInBatchRequest",
                400,
                format!("The batch request contains more entries than permissible ({MAX_BATCH})."),
            ));
        }
        let mut ids = Vec::new();
        for e in &entries {
            let id = e.get("Id").unwrap_or_default();
            let valid = !id.is_empty()
                && id.len() <= 80
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(SnsError::new(
                    "InvalidBatchEntryId",
                    400,
                    "The Id of a batch entry in a batch request doesn't abide by the specification.",
                ));
            }
            if ids.iter().any(|i| i == id) {
                return Err(SnsError::new(
                    "BatchEntryIdsNotDistinct",
                    400,
                    "Two or more batch entries in the request have the same Id.",
                ));
            }
            ids.push(id.to_owned());
        }
        let messages: Vec<Result<Outgoing, SnsError>> = entries.iter().map(outgoing).collect();
        let total: usize = messages.iter().flatten().map(payload_size).sum();
        if total > MAX_PAYLOAD {
            return Err(SnsError::new(
                "BatchRequestTooLong",
                400,
                format!("The length of all the messages put together is more than the limit ({total} > {MAX_PAYLOAD} bytes)."),
            ));
        }
        Ok((ids, self.publish(&topic, messages)?))
    }

    /// Deliver each message to every subscription whose filter admits it, in
    /// one transaction of the queues' store.
    fn publish(
        &self,
        topic: &str,
        messages: Vec<Result<Outgoing, SnsError>>,
    ) -> Result<Vec<Result<String, SnsError>>, SnsError> {
        let subs: Vec<Subscription> = self.read(|t| {
            if !t.topics.contains_key(topic) {
                return Err(no_topic(topic));
            }
            Ok(t.subscriptions
                .values()
                .filter(|s| s.topic_arn == topic)
                .cloned()
                .collect())
        })?;
        let mut deliveries = Vec::new();
        // Per delivery, the subscription's dead-letter queue (RedrivePolicy).
        let mut dead_letters: Vec<Option<String>> = Vec::new();
        let mut results = Vec::new();
        for m in messages {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            let id = uuid::Uuid::new_v4().to_string();
            for s in subs.iter().filter(|s| s.admits(&m)) {
                let queue = queue_name(&s.endpoint).expect("checked when subscribed").to_owned();
                if s.raw() && m.attributes.len() > MAX_ATTRIBUTES {
                    // SNS: "discarded as client side errors" for raw SQS subscriptions.
                    tracing::warn!(
                        queue,
                        topic,
                        "sns emulator: over 10 attributes for a raw SQS subscription; dropped"
                    );
                    continue;
                }
                dead_letters.push(s.dead_letter_queue());
                deliveries.push(if s.raw() {
                    Delivery {
                        queue,
                        body: m.message.clone(),
                        attributes: m.attributes.clone(),
                    }
                } else {
                    Delivery {
                        queue,
                        body: self.envelope(topic, &id, &m),
                        attributes: BTreeMap::new(),
                    }
                });
            }
            results.push(Ok(id));
        }
        let missing = self
            .sqs
            .deliver(&deliveries)
            .map_err(|e| SnsError::internal(format!("delivering to SQS: {e}")))?;
        // A delivery to a queue that is gone goes to the subscription's
        // dead-letter queue if it has one (SNS, after its retries); else it is lost.
        let redriven: Vec<Delivery> = deliveries
            .into_iter()
            .zip(dead_letters)
            .filter(|(d, _)| missing.contains(&d.queue))
            .filter_map(|(d, dlq)| dlq.map(|queue| Delivery { queue, ..d }))
            .collect();
        for q in &missing {
            tracing::warn!(queue = q, topic, "sns emulator: a subscribed queue does not exist");
        }
        let lost = self
            .sqs
            .deliver(&redriven)
            .map_err(|e| SnsError::internal(format!("delivering to SQS: {e}")))?;
        for q in lost {
            tracing::warn!(
                queue = q,
                topic,
                "sns emulator: no dead-letter queue {q} either; delivery dropped"
            );
        }
        Ok(results)
    }

    /// The JSON a subscription without raw delivery receives.
    fn envelope(&self, topic: &str, id: &str, m: &Outgoing) -> String {
        let mut v = json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": topic,
            "Message": m.message,
            "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "SignatureVersion": "1",
            "Signature": "EMULATED",
            "SigningCertURL": format!("{}/SimpleNotificationService-emulated.pem", self.endpoint),
            "UnsubscribeURL": format!("{}/?Action=Unsubscribe", self.endpoint),
        });
        if let Some(s) = &m.subject {
            v["Subject"] = Value::String(s.clone());
        }
        if !m.attributes.is_empty() {
            let attrs: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .map(|(k, a)| {
                    let value = a
                        .string_value
                        .clone()
                        .or_else(|| a.binary_value.clone())
                        .unwrap_or_default();
                    (k.clone(), json!({ "Type": a.data_type, "Value": value }))
                })
                .collect();
            v["MessageAttributes"] = Value::Object(attrs);
        }
        v.to_string()
    }
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, SnsError> {
    p.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        SnsError::invalid(format!(
            "Invalid parameter: {name} Reason: no value for required parameter"
        ))
    })
}

fn no_topic(arn: &str) -> SnsError {
    SnsError::not_found(format!("Topic does not exist: {arn}"))
}

fn no_subscription(arn: &str) -> SnsError {
    SnsError::not_found(format!("Subscription does not exist: {arn}"))
}

fn default_policy(arn: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": ["SNS:Publish", "SNS:Subscribe", "SNS:GetTopicAttributes", "SNS:SetTopicAttributes"],
            "Resource": arn,
            "Condition": { "StringEquals": { "AWS:SourceOwner": ACCOUNT } }
        }]
    })
    .to_string()
}

/// The queue an `sqs` endpoint ARN of this account and region names.
fn queue_name(endpoint: &str) -> Option<&str> {
    let name = endpoint.strip_prefix(&format!("arn:aws:sqs:{REGION}:{ACCOUNT}:"))?;
    (!name.is_empty()).then_some(name)
}

const TOPIC_ATTRIBUTES: &[&str] = &[
    "DeliveryPolicy",
    "DisplayName",
    "Policy",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
    "ArchivePolicy",
    "DataProtectionPolicy",
    "SQSSuccessFeedbackRoleArn",
    "SQSSuccessFeedbackSampleRate",
    "SQSFailureFeedbackRoleArn",
];

fn check_topic_attribute(name: &str, value: &str) -> Result<(), SnsError> {
    if name == "FifoTopic" || name == "ContentBasedDeduplication" {
        return if value == "false" {
            Ok(())
        } else {
            Err(SnsError::invalid("Invalid parameter: FIFO topics are not emulated"))
        };
    }
    if !TOPIC_ATTRIBUTES.contains(&name) {
        return Err(SnsError::invalid(format!("Invalid parameter: AttributeName {name}")));
    }
    if name == "Policy" && serde_json::from_str::<Value>(value).is_err() {
        return Err(SnsError::invalid(
            "Invalid parameter: Policy Error: not a JSON document",
        ));
    }
    Ok(())
}

const SUBSCRIPTION_ATTRIBUTES: &[&str] = &[
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
];

fn check_subscription_attribute(name: &str, value: &str) -> Result<(), SnsError> {
    if !SUBSCRIPTION_ATTRIBUTES.contains(&name) {
        return Err(SnsError::invalid(format!("Invalid parameter: AttributeName {name}")));
    }
    let dlq_arn = |v: &str| {
        serde_json::from_str::<Value>(v)
            .ok()
            .and_then(|p| p.get("deadLetterTargetArn").and_then(Value::as_str).map(str::to_owned))
    };
    if name == "RedrivePolicy" && !value.is_empty() && dlq_arn(value).is_none_or(|a| queue_name(&a).is_none()) {
        return Err(SnsError::invalid(
            "Invalid parameter: RedrivePolicy: deadLetterTargetArn must be an SQS queue ARN of this account and region",
        ));
    }
    if name == "RawMessageDelivery" && value != "true" && value != "false" {
        return Err(SnsError::invalid(
            "Invalid parameter: RawMessageDelivery must be true or false",
        ));
    }
    Ok(())
}

fn subscription_attributes(arn: &str, s: &Subscription) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("SubscriptionArn".to_owned(), arn.to_owned()),
        ("TopicArn".to_owned(), s.topic_arn.clone()),
        ("Owner".to_owned(), ACCOUNT.to_owned()),
        ("Protocol".to_owned(), s.protocol.clone()),
        ("Endpoint".to_owned(), s.endpoint.clone()),
        ("ConfirmationWasAuthenticated".to_owned(), "true".to_owned()),
        ("PendingConfirmation".to_owned(), "false".to_owned()),
        ("RawMessageDelivery".to_owned(), "false".to_owned()),
    ]);
    a.extend(s.attributes.clone());
    if a.contains_key("FilterPolicy") {
        a.entry("FilterPolicyScope".to_owned())
            .or_insert_with(|| "MessageAttributes".to_owned());
    }
    a
}

fn paged<T>(all: Vec<T>, token: Option<&str>) -> Result<(Vec<T>, Option<String>), SnsError> {
    let start: usize = match token {
        Some(t) => t
            .parse()
            .map_err(|_| SnsError::invalid("Invalid parameter: NextToken"))?,
        None => 0,
    };
    let next = (all.len() > start + PAGE).then(|| (start + PAGE).to_string());
    Ok((all.into_iter().skip(start).take(PAGE).collect(), next))
}

/// A message of a `Publish` (or a batch entry), checked as SNS checks it.
fn outgoing(p: &Params) -> Result<Outgoing, SnsError> {
    let mut message = p
        .get("Message")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| SnsError::invalid("Invalid parameter: Empty message"))?
        .to_owned();
    let structure_json = p.get("MessageStructure") == Some("json");
    if structure_json {
        let v: Value = serde_json::from_str(&message).map_err(|_| {
            SnsError::invalid("Invalid parameter: Message Structure - JSON message body failed to parse")
        })?;
        let default = v.get("default").and_then(Value::as_str).ok_or_else(|| {
            SnsError::invalid("Invalid parameter: Message Structure - No default entry in JSON message body")
        })?;
        message = v.get("sqs").and_then(Value::as_str).unwrap_or(default).to_owned();
    }
    let mut attributes = BTreeMap::new();
    for (name, a) in p.entries("MessageAttributes", "Name") {
        let data_type = a.get("Value.DataType").unwrap_or_default().to_owned();
        let string_value = a.get("Value.StringValue").map(str::to_owned);
        let binary_value = a.get("Value.BinaryValue").map(str::to_owned);
        let base = data_type.split('.').next().unwrap_or_default();
        let bad = |why: &str| {
            SnsError::new(
                "ParameterValueInvalid",
                400,
                format!("The message attribute '{name}' {why}"),
            )
        };
        let valid_name = !name.is_empty()
            && name.len() <= 256
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !name.to_ascii_lowercase().starts_with("aws.")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !valid_name {
            return Err(bad("has an invalid name"));
        }
        match base {
            "String" | "Number" if string_value.as_deref().is_none_or(str::is_empty) => {
                return Err(bad("must contain a non-empty message attribute value"))
            }
            "Binary" if binary_value.as_deref().is_none_or(str::is_empty) => {
                return Err(bad("must contain a non-empty message attribute value"))
            }
            "String" | "Number" | "Binary" => {}
            _ => return Err(bad(&format!("has an invalid message attribute type {data_type:?}"))),
        }
        if data_type == "String.Array"
            && string_value
                .as_deref()
                .is_none_or(|v| serde_json::from_str::<Vec<Value>>(v).is_err())
        {
            return Err(bad("must be a JSON array of String.Array"));
        }
        attributes.insert(
            name,
            DeliveredAttribute {
                data_type,
                string_value,
                binary_value,
            },
        );
    }
    if structure_json {
        // "Message attributes are sent only when the message structure is
        // String, not JSON."
        attributes.clear();
    }
    let m = Outgoing {
        message,
        subject: p.get("Subject").map(str::to_owned),
        attributes,
    };
    if payload_size(&m) > MAX_PAYLOAD {
        return Err(SnsError::invalid(format!(
            "Invalid parameter: Message too long ({} bytes with attributes, at most {MAX_PAYLOAD})",
            payload_size(&m)
        )));
    }
    Ok(m)
}

fn payload_size(m: &Outgoing) -> usize {
    m.message.len()
        + m.attributes
            .iter()
            .map(|(k, a)| {
                k.len()
                    + a.data_type.len()
                    + a.string_value
                        .as_deref()
                        .or(a.binary_value.as_deref())
                        .map_or(0, str::len)
            })
            .sum::<usize>()
}

/// Serve `sns` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, sns: Arc<Sns>, mut stop: watch::Receiver<bool>) {
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(sns);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("sns emulator stopped: {e}");
    }
}

const XML: &str = "text/xml";

async fn handle(State(sns): State<Arc<Sns>>, uri: axum::http::Uri, body: Bytes) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let p = if body.is_empty() {
        Params::parse(uri.query().unwrap_or_default().as_bytes())
    } else {
        Params::parse(&body)
    };
    match sns.dispatch(&p) {
        Ok((action, result)) => (
            [(axum::http::header::CONTENT_TYPE, XML)],
            query::response(&action, &request_id, result),
        )
            .into_response(),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!("sns emulator: {e}");
            }
            let kind = if e.status < 500 { "Sender" } else { "Receiver" };
            (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                [(axum::http::header::CONTENT_TYPE, XML)],
                query::error(kind, e.code, &e.message, &request_id),
            )
                .into_response()
        }
    }
}
