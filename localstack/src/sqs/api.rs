//! The operations on the wire: the JSON protocol's request and response
//! members (as `aws-sdk-sqs` and botocore send and read them), checked
//! against SQS's documented limits, and answered from the store.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{Code, SqsError};
use super::store::{validate_name, Attributes, NewMessage, Received, MAX_MESSAGE_SIZE};
use super::Sqs;

/// Answer one operation (`X-Amz-Target: AmazonSQS.<op>`) with its JSON.
pub async fn dispatch(sqs: &Sqs, op: &str, body: &[u8]) -> Result<Value, SqsError> {
    // An empty body is an empty request (some clients send nothing for ListQueues).
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    match op {
        "CreateQueue" => create_queue(sqs, parse(body)?),
        "GetQueueUrl" => get_queue_url(sqs, parse(body)?),
        "ListQueues" => list_queues(sqs, parse(body)?),
        "GetQueueAttributes" => get_queue_attributes(sqs, parse(body)?),
        "SetQueueAttributes" => set_queue_attributes(sqs, parse(body)?),
        "DeleteQueue" => {
            let r: QueueRequest = parse(body)?;
            let name = sqs.queue_name(r.queue_url.as_deref())?;
            sqs.with_store(|s| s.delete_queue(&name))?;
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let r: QueueRequest = parse(body)?;
            let name = sqs.queue_name(r.queue_url.as_deref())?;
            sqs.with_store(|s| s.purge(&name, super::now()))?;
            Ok(json!({}))
        }
        "SendMessage" => send_message(sqs, parse(body)?),
        "SendMessageBatch" => send_message_batch(sqs, parse(body)?),
        "ReceiveMessage" => receive_message(sqs, parse(body)?).await,
        "DeleteMessage" => {
            let r: DeleteRequest = parse(body)?;
            let name = sqs.queue_name(r.queue_url.as_deref())?;
            let receipt = required(r.receipt_handle, "ReceiptHandle")?;
            sqs.with_store(|s| s.delete(&name, &receipt))?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => delete_message_batch(sqs, parse(body)?),
        "ChangeMessageVisibility" => {
            let r: VisibilityRequest = parse(body)?;
            let name = sqs.queue_name(r.queue_url.as_deref())?;
            let receipt = required(r.receipt_handle, "ReceiptHandle")?;
            let timeout = required(r.visibility_timeout, "VisibilityTimeout")?;
            sqs.with_store(|s| s.change_visibility(&name, &receipt, timeout, super::now()))?;
            sqs.wake();
            Ok(json!({}))
        }
        "ChangeMessageVisibilityBatch" => change_visibility_batch(sqs, parse(body)?),
        _ => Err(SqsError::new(
            Code::UnknownOperation,
            format!("The action {op} is not valid for this endpoint (the local stack emulates the SQS operations the pipeline and its consumers use)."),
        )),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SqsError> {
    serde_json::from_slice(body).map_err(|e| SqsError::new(Code::SerializationException, format!("{e}")))
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, SqsError> {
    v.ok_or_else(|| {
        SqsError::new(
            Code::MissingParameter,
            format!("The request must contain the parameter {name}."),
        )
    })
}

fn invalid(name: &str, value: impl std::fmt::Display, reason: &str) -> SqsError {
    SqsError::new(
        Code::InvalidParameterValue,
        format!("Value {value} for parameter {name} is invalid. Reason: {reason}"),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct QueueRequest {
    queue_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateQueueRequest {
    queue_name: Option<String>,
    attributes: Attributes,
}

fn create_queue(sqs: &Sqs, r: CreateQueueRequest) -> Result<Value, SqsError> {
    let name = required(r.queue_name, "QueueName")?;
    sqs.with_store(|s| s.create_queue(&name, &r.attributes, super::now()))?;
    Ok(json!({ "QueueUrl": sqs.url(&name) }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GetQueueUrlRequest {
    queue_name: Option<String>,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    owner: Option<String>,
}

fn get_queue_url(sqs: &Sqs, r: GetQueueUrlRequest) -> Result<Value, SqsError> {
    let name = required(r.queue_name, "QueueName")?;
    if r.owner.as_deref().is_some_and(|o| o != crate::identity::ACCOUNT) {
        return Err(SqsError::new(
            Code::QueueDoesNotExist,
            "The specified queue does not exist.",
        ));
    }
    sqs.with_store(|s| s.queue(&name))?;
    Ok(json!({ "QueueUrl": sqs.url(&name) }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListQueuesRequest {
    queue_name_prefix: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn list_queues(sqs: &Sqs, r: ListQueuesRequest) -> Result<Value, SqsError> {
    if let Some(m) = r.max_results.filter(|m| !(1..=1000).contains(m)) {
        return Err(invalid("MaxResults", m, "Must be between 1 and 1000."));
    }
    let names = sqs.with_store(|s| s.list_queues(r.queue_name_prefix.as_deref().unwrap_or("")))?;
    // The token is the last name of the previous page.
    let after: Vec<String> = names
        .into_iter()
        .filter(|n| r.next_token.as_ref().is_none_or(|t| n > t))
        .collect();
    let page = r.max_results.unwrap_or(1000) as usize;
    let mut out = Map::new();
    let shown = &after[..after.len().min(page)];
    if !shown.is_empty() {
        out.insert(
            "QueueUrls".into(),
            shown.iter().map(|n| Value::String(sqs.url(n))).collect(),
        );
    }
    if r.max_results.is_some() && after.len() > page {
        out.insert("NextToken".into(), Value::String(shown[shown.len() - 1].clone()));
    }
    Ok(Value::Object(out))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct GetAttributesRequest {
    queue_url: Option<String>,
    attribute_names: Vec<String>,
}

/// Every attribute `GetQueueAttributes` knows, in SQS's spelling.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "VisibilityTimeout",
];

fn get_queue_attributes(sqs: &Sqs, r: GetAttributesRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    for a in &r.attribute_names {
        if a != "All" && !QUEUE_ATTRIBUTES.contains(&a.as_str()) && !is_fifo_attribute(a) {
            return Err(SqsError::new(
                Code::InvalidAttributeName,
                format!("Unknown Attribute {a}."),
            ));
        }
    }
    let (q, depth) = sqs.with_store(|s| Ok((s.queue(&name)?, s.depth(&name, super::now())?)))?;
    let mut all: BTreeMap<&str, String> = BTreeMap::new();
    all.insert("QueueArn", sqs.arn(&name));
    all.insert("ApproximateNumberOfMessages", depth.visible.to_string());
    all.insert("ApproximateNumberOfMessagesNotVisible", depth.in_flight.to_string());
    all.insert("ApproximateNumberOfMessagesDelayed", depth.delayed.to_string());
    all.insert("CreatedTimestamp", q.created.to_string());
    all.insert("LastModifiedTimestamp", q.modified.to_string());
    all.insert("VisibilityTimeout", q.visibility_timeout().to_string());
    all.insert("MaximumMessageSize", q.max_message_size().to_string());
    all.insert("MessageRetentionPeriod", q.retention().to_string());
    all.insert("DelaySeconds", q.delay().to_string());
    all.insert("ReceiveMessageWaitTimeSeconds", q.receive_wait().to_string());
    // SQS-managed encryption is on by default for new queues.
    all.insert("SqsManagedSseEnabled", "true".into());
    for (k, v) in &q.attributes {
        if let Some(known) = QUEUE_ATTRIBUTES.iter().find(|a| **a == k.as_str()) {
            all.insert(known, v.clone());
        }
    }
    let want_all = r.attribute_names.iter().any(|a| a == "All");
    let attributes: Map<String, Value> = all
        .into_iter()
        .filter(|(k, _)| want_all || r.attribute_names.iter().any(|a| a == k))
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    if attributes.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": attributes }))
}

fn is_fifo_attribute(name: &str) -> bool {
    matches!(
        name,
        "FifoQueue" | "ContentBasedDeduplication" | "DeduplicationScope" | "FifoThroughputLimit"
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SetAttributesRequest {
    queue_url: Option<String>,
    attributes: Attributes,
}

fn set_queue_attributes(sqs: &Sqs, r: SetAttributesRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    sqs.with_store(|s| s.set_attributes(&name, &r.attributes, super::now()))?;
    sqs.wake();
    Ok(json!({}))
}

/// A message attribute as the JSON protocol carries it (binary values in base64).
#[derive(Deserialize, serde::Serialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
struct AttributeValue {
    data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    string_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
}

type MessageAttributes = BTreeMap<String, AttributeValue>;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendRequest {
    queue_url: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<i64>,
    message_attributes: MessageAttributes,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendBatchEntry {
    id: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<i64>,
    message_attributes: MessageAttributes,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendBatchRequest {
    queue_url: Option<String>,
    entries: Vec<SendBatchEntry>,
}

/// A checked message, ready to store, with what the sender is answered.
struct Checked {
    message: NewMessage,
    md5_of_attributes: Option<String>,
}

fn check_message(
    body: Option<String>,
    delay: Option<i64>,
    attributes: MessageAttributes,
    fifo_fields: bool,
    max_size: i64,
) -> Result<Checked, SqsError> {
    if fifo_fields {
        return Err(invalid(
            "MessageDeduplicationId",
            "(set)",
            "The request includes a parameter that is not valid for this queue type.",
        ));
    }
    let body = body.filter(|b| !b.is_empty()).ok_or_else(|| {
        SqsError::new(
            Code::MissingParameter,
            "The request must contain the parameter MessageBody.",
        )
    })?;
    if let Some(c) = body.chars().find(|c| !allowed_char(*c)) {
        return Err(SqsError::new(
            Code::InvalidMessageContents,
            format!(
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF (found U+{:04X})",
                c as u32
            ),
        ));
    }
    if let Some(d) = delay.filter(|d| !(0..=900).contains(d)) {
        return Err(invalid("DelaySeconds", d, "Must be between 0 and 900, if provided."));
    }
    let size = body.len() + check_attributes(&attributes)?;
    if size as i64 > max_size {
        return Err(invalid(
            "MessageBody",
            "(the message)",
            &format!("Message must be shorter than {max_size} bytes."),
        ));
    }
    let md5_of_attributes = (!attributes.is_empty()).then(|| md5_of_attributes(&attributes));
    Ok(Checked {
        message: NewMessage {
            md5_of_body: format!("{:x}", md5::compute(body.as_bytes())),
            body,
            attributes: (!attributes.is_empty())
                .then(|| serde_json::to_string(&attributes).expect("attributes serialize")),
            delay,
        },
        md5_of_attributes,
    })
}

/// What SQS accepts in a body: XML's characters.
fn allowed_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Check message attributes; their size (names, types and values) counts
/// toward the message's.
fn check_attributes(attributes: &MessageAttributes) -> Result<usize, SqsError> {
    if attributes.len() > 10 {
        return Err(invalid(
            "MessageAttributes",
            attributes.len(),
            "Number of message attributes cannot exceed 10.",
        ));
    }
    let mut size = 0;
    for (name, v) in attributes {
        let lower = name.to_ascii_lowercase();
        let name_ok = (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !name_ok {
            return Err(invalid(
                "MessageAttributes",
                name,
                "Message attribute name is not valid.",
            ));
        }
        let base = v.data_type.split('.').next().unwrap_or("");
        let value_len = match (base, &v.string_value, &v.binary_value) {
            ("String", Some(s), _) if !s.is_empty() => s.len(),
            ("Number", Some(s), _) if s.parse::<f64>().is_ok() => s.len(),
            ("Binary", _, Some(b)) => decode_binary(name, b)?.len(),
            ("String" | "Number" | "Binary", _, _) => {
                return Err(invalid(
                    "MessageAttributes",
                    name,
                    &format!(
                        "Message (user) attribute '{name}' must contain a non-empty, valid value of type '{}'.",
                        v.data_type
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    "MessageAttributes",
                    name,
                    &format!("The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."),
                ));
            }
        };
        size += name.len() + v.data_type.len() + value_len;
    }
    Ok(size)
}

fn decode_binary(name: &str, b64: &str) -> Result<Vec<u8>, SqsError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid("MessageAttributes", name, "The binary value is not base64."))
}

/// MD5 of message attributes as SQS computes it: by name, each name, type
/// and value length-prefixed (4 bytes, big-endian), the value after a
/// transport byte (1 string, 2 binary).
fn md5_of_attributes(attributes: &MessageAttributes) -> String {
    let mut buf = Vec::new();
    let put = |bytes: &[u8], buf: &mut Vec<u8>| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for (name, v) in attributes {
        put(name.as_bytes(), &mut buf);
        put(v.data_type.as_bytes(), &mut buf);
        match (&v.string_value, &v.binary_value) {
            (Some(s), _) if !v.data_type.starts_with("Binary") => {
                buf.push(1);
                put(s.as_bytes(), &mut buf);
            }
            (_, Some(b)) => {
                buf.push(2);
                put(&decode_binary(name, b).unwrap_or_default(), &mut buf);
            }
            _ => {}
        }
    }
    format!("{:x}", md5::compute(&buf))
}

fn send_message(sqs: &Sqs, r: SendRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    let max = sqs.with_store(|s| s.queue(&name))?.max_message_size();
    // A group id is allowed on a standard queue (fair queues); a deduplication id is not.
    let fifo = r.message_deduplication_id.is_some();
    let c = check_message(r.message_body, r.delay_seconds, r.message_attributes, fifo, max)?;
    let id = sqs
        .with_store(|s| s.send(&name, std::slice::from_ref(&c.message), super::now()))?
        .remove(0);
    sqs.wake();
    let mut out = json!({ "MessageId": id, "MD5OfMessageBody": c.message.md5_of_body });
    if let Some(md5) = c.md5_of_attributes {
        out["MD5OfMessageAttributes"] = Value::String(md5);
    }
    Ok(out)
}

/// The checks every batch shares: 1 to 10 entries, ids valid and distinct.
fn check_batch<'a>(ids: impl Iterator<Item = Option<&'a str>>) -> Result<(), SqsError> {
    let ids: Vec<Option<&str>> = ids.collect();
    if ids.is_empty() {
        return Err(SqsError::new(
            Code::EmptyBatchRequest,
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ));
    }
    if ids.len() > 10 {
        return Err(SqsError::new(
            Code::TooManyEntriesInBatchRequest,
            format!(
                "Maximum number of entries per request are 10. You have sent {}.",
                ids.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let id =
            id.ok_or_else(|| SqsError::new(Code::MissingParameter, "The request must contain the parameter Id."))?;
        let ok =
            (1..=80).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(SqsError::new(
                Code::InvalidBatchEntryId,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::new(
                Code::BatchEntryIdsNotDistinct,
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

fn failed(id: &str, e: &SqsError) -> Value {
    json!({ "Id": id, "SenderFault": e.code.status() < 500, "Code": e.code.query_code(), "Message": e.message })
}

/// Bytes an entry counts toward the batch limit: body, attribute names,
/// types and values (binary ones decoded).
fn entry_size(e: &SendBatchEntry) -> usize {
    let attributes: usize = e
        .message_attributes
        .iter()
        .map(|(k, v)| {
            let value = match (&v.string_value, &v.binary_value) {
                (Some(s), _) => s.len(),
                (None, Some(b)) => b.len() / 4 * 3,
                (None, None) => 0,
            };
            k.len() + v.data_type.len() + value
        })
        .sum();
    e.message_body.as_ref().map_or(0, String::len) + attributes
}

fn send_message_batch(sqs: &Sqs, r: SendBatchRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    check_batch(r.entries.iter().map(|e| e.id.as_deref()))?;
    let max = sqs.with_store(|s| s.queue(&name))?.max_message_size();
    let mut ok = Vec::new();
    let mut failures = Vec::new();
    // The whole request counts toward the batch limit, entries refused or not.
    let total: usize = r.entries.iter().map(entry_size).sum();
    for e in r.entries {
        let id = e.id.unwrap_or_default();
        let fifo = e.message_deduplication_id.is_some();
        match check_message(e.message_body, e.delay_seconds, e.message_attributes, fifo, max) {
            Ok(c) => ok.push((id, c)),
            Err(err) => failures.push(failed(&id, &err)),
        }
    }
    if total as i64 > MAX_MESSAGE_SIZE {
        return Err(SqsError::new(
            Code::BatchRequestTooLong,
            format!("Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. You have sent {total} bytes."),
        ));
    }
    let messages: Vec<NewMessage> = ok.iter().map(|(_, c)| c.message.clone()).collect();
    let ids = if messages.is_empty() {
        Vec::new()
    } else {
        sqs.with_store(|s| s.send(&name, &messages, super::now()))?
    };
    if !ids.is_empty() {
        sqs.wake();
    }
    let successful: Vec<Value> = ok
        .iter()
        .zip(ids)
        .map(|((id, c), message_id)| {
            let mut v = json!({ "Id": id, "MessageId": message_id, "MD5OfMessageBody": c.message.md5_of_body });
            if let Some(md5) = &c.md5_of_attributes {
                v["MD5OfMessageAttributes"] = Value::String(md5.clone());
            }
            v
        })
        .collect();
    Ok(json!({ "Successful": successful, "Failed": failures }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ReceiveRequest {
    queue_url: Option<String>,
    max_number_of_messages: Option<i64>,
    visibility_timeout: Option<i64>,
    wait_time_seconds: Option<i64>,
    attribute_names: Vec<String>,
    message_system_attribute_names: Vec<String>,
    message_attribute_names: Vec<String>,
}

/// The message system attributes a standard queue has.
const SYSTEM_ATTRIBUTES: &[&str] = &[
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
];

async fn receive_message(sqs: &Sqs, r: ReceiveRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    let max = r.max_number_of_messages.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(invalid(
            "MaxNumberOfMessages",
            max,
            "Must be between 1 and 10, if provided.",
        ));
    }
    if let Some(v) = r.visibility_timeout.filter(|v| !(0..=43_200).contains(v)) {
        return Err(invalid(
            "VisibilityTimeout",
            v,
            "Must be between 0 and 43200, if provided.",
        ));
    }
    if let Some(w) = r.wait_time_seconds.filter(|w| !(0..=20).contains(w)) {
        return Err(invalid("WaitTimeSeconds", w, "Must be >= 0 and <= 20, if provided."));
    }
    let wanted_system: Vec<&str> = r
        .attribute_names
        .iter()
        .chain(&r.message_system_attribute_names)
        .map(String::as_str)
        .collect();
    let messages = sqs
        .receive(&name, max as usize, r.visibility_timeout, r.wait_time_seconds)
        .await?;
    if messages.is_empty() {
        return Ok(json!({}));
    }
    let out: Vec<Value> = messages
        .into_iter()
        .map(|m| message_json(m, &wanted_system, &r.message_attribute_names))
        .collect();
    Ok(json!({ "Messages": out }))
}

fn message_json(m: Received, system: &[&str], names: &[String]) -> Value {
    let mut v = json!({
        "MessageId": m.id,
        "ReceiptHandle": m.receipt,
        "MD5OfBody": m.md5_of_body,
        "Body": m.body,
    });
    let all = system.contains(&"All");
    let attributes: Map<String, Value> = SYSTEM_ATTRIBUTES
        .iter()
        .filter(|a| all || system.contains(a))
        .map(|a| {
            let value = match *a {
                "SenderId" => crate::identity::ACCESS_KEY.to_owned(),
                "SentTimestamp" => m.sent.to_string(),
                "ApproximateReceiveCount" => m.receives.to_string(),
                _ => m.first_receive.to_string(),
            };
            ((*a).to_owned(), Value::String(value))
        })
        .collect();
    if !attributes.is_empty() {
        v["Attributes"] = Value::Object(attributes);
    }
    let stored: MessageAttributes = m
        .attributes
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    let chosen: MessageAttributes = stored
        .into_iter()
        .filter(|(k, _)| {
            names.iter().any(|n| {
                n == "All"
                    || n == ".*"
                    || n == k
                    || n.strip_suffix(".*").is_some_and(|p| k.starts_with(&format!("{p}.")))
            })
        })
        .collect();
    if !chosen.is_empty() {
        v["MD5OfMessageAttributes"] = Value::String(md5_of_attributes(&chosen));
        v["MessageAttributes"] = serde_json::to_value(&chosen).expect("attributes serialize");
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteBatchRequest {
    queue_url: Option<String>,
    entries: Vec<DeleteEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
}

fn delete_message_batch(sqs: &Sqs, r: DeleteBatchRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    sqs.with_store(|s| s.queue(&name))?;
    check_batch(r.entries.iter().map(|e| e.id.as_deref()))?;
    Ok(per_entry(r.entries, |e| {
        let result = required(e.receipt_handle, "ReceiptHandle").and_then(|h| sqs.with_store(|s| s.delete(&name, &h)));
        (e.id.unwrap_or_default(), result)
    }))
}

/// The answer of a batch whose entries succeed or fail one by one: each
/// entry run gives its id and its outcome.
fn per_entry<E>(entries: Vec<E>, mut run: impl FnMut(E) -> (String, Result<(), SqsError>)) -> Value {
    let (mut ok, mut failures) = (Vec::new(), Vec::new());
    for e in entries {
        match run(e) {
            (id, Ok(())) => ok.push(json!({ "Id": id })),
            (id, Err(err)) => failures.push(failed(&id, &err)),
        }
    }
    json!({ "Successful": ok, "Failed": failures })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VisibilityRequest {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VisibilityBatchRequest {
    queue_url: Option<String>,
    entries: Vec<VisibilityEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VisibilityEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<i64>,
}

fn change_visibility_batch(sqs: &Sqs, r: VisibilityBatchRequest) -> Result<Value, SqsError> {
    let name = sqs.queue_name(r.queue_url.as_deref())?;
    sqs.with_store(|s| s.queue(&name))?;
    check_batch(r.entries.iter().map(|e| e.id.as_deref()))?;
    let out = per_entry(r.entries, |e| {
        // A missing timeout is 0 for a batch entry, as SQS documents none.
        let result = required(e.receipt_handle, "ReceiptHandle").and_then(|h| {
            sqs.with_store(|s| s.change_visibility(&name, &h, e.visibility_timeout.unwrap_or(0), super::now()))
        });
        (e.id.unwrap_or_default(), result)
    });
    sqs.wake();
    Ok(out)
}

/// The queue name in a queue URL (`…/ACCOUNT/NAME`).
pub fn name_from_url(url: Option<&str>) -> Result<String, SqsError> {
    let url = required(url, "QueueUrl")?;
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let name = parts.next().unwrap_or("");
    let account = parts.next().unwrap_or("");
    if account != crate::identity::ACCOUNT || validate_name(name).is_err() {
        return Err(SqsError::new(
            Code::QueueDoesNotExist,
            format!("The specified queue does not exist ({url})."),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(v: &str) -> AttributeValue {
        AttributeValue {
            data_type: "String".into(),
            string_value: Some(v.into()),
            binary_value: None,
        }
    }

    #[test]
    fn md5_of_attributes_matches_other_implementations() {
        // The first digest is the published test vector of the npm package
        // aws-md5-of-message-attributes; both were also computed with moto
        // 5.2.5's implementation (an independent one, in Python).
        let one = MessageAttributes::from([("attribName1".to_owned(), string("attribValue 1"))]);
        assert_eq!(md5_of_attributes(&one), "19e27d4e946b072f3f58da80d94fd778");
        let three = MessageAttributes::from([
            ("type".to_owned(), string("aggregate.changed")),
            ("dataset".to_owned(), string("orders")),
            (
                "bin".to_owned(),
                AttributeValue {
                    data_type: "Binary".into(),
                    string_value: None,
                    binary_value: Some("AAEC/w==".into()),
                },
            ),
        ]);
        assert_eq!(md5_of_attributes(&three), "73945357851780d237925dce4caa81d6");
    }

    #[test]
    fn bodies_and_attributes_are_checked() {
        let none = MessageAttributes::new();
        let max = super::super::store::MAX_MESSAGE_SIZE;
        assert_eq!(
            check_message(None, None, none.clone(), false, max).err().unwrap().code,
            Code::MissingParameter
        );
        let e = check_message(Some("a\u{1}b".into()), None, none.clone(), false, max)
            .err()
            .unwrap();
        assert_eq!(e.code, Code::InvalidMessageContents);
        let e = check_message(Some("x".into()), Some(901), none.clone(), false, max)
            .err()
            .unwrap();
        assert_eq!(e.code, Code::InvalidParameterValue);
        let e = check_message(Some("x".repeat(1025)), None, none.clone(), false, 1024)
            .err()
            .unwrap();
        assert_eq!(e.code, Code::InvalidParameterValue);
        for (name, data_type, value) in [
            ("aws.x", "String", "v"),
            ("ok", "String", ""),
            ("ok", "Number", "x"),
            ("ok", "Date", "v"),
        ] {
            let attrs = MessageAttributes::from([(
                name.to_owned(),
                AttributeValue {
                    data_type: data_type.into(),
                    string_value: Some(value.into()),
                    binary_value: None,
                },
            )]);
            let e = check_message(Some("x".into()), None, attrs, false, max).err().unwrap();
            assert_eq!(e.code, Code::InvalidParameterValue, "{name} {data_type} {value:?}");
        }
        let ok = check_message(Some("héllo\t\n".into()), Some(0), none, false, max).unwrap();
        assert_eq!(ok.message.md5_of_body, format!("{:x}", md5::compute("héllo\t\n")));
    }

    #[test]
    fn batches_are_checked() {
        assert_eq!(
            check_batch(std::iter::empty()).unwrap_err().code,
            Code::EmptyBatchRequest
        );
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(
            check_batch(eleven.iter().map(|s| Some(s.as_str()))).unwrap_err().code,
            Code::TooManyEntriesInBatchRequest
        );
        assert_eq!(
            check_batch([Some("a"), Some("a")].into_iter()).unwrap_err().code,
            Code::BatchEntryIdsNotDistinct
        );
        assert_eq!(
            check_batch([Some("a b")].into_iter()).unwrap_err().code,
            Code::InvalidBatchEntryId
        );
        check_batch([Some("a-1"), Some("b_2")].into_iter()).unwrap();
    }

    #[test]
    fn queue_urls_name_a_queue_of_this_account() {
        let url = format!("http://127.0.0.1:1/{}/orders-feed", crate::identity::ACCOUNT);
        assert_eq!(name_from_url(Some(&url)).unwrap(), "orders-feed");
        assert_eq!(
            name_from_url(Some("http://x/123/orders")).unwrap_err().code,
            Code::QueueDoesNotExist
        );
        assert_eq!(name_from_url(None).unwrap_err().code, Code::MissingParameter);
    }
}
