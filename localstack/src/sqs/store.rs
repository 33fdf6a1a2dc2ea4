//! Queues and their messages in SQLite. Every change is committed before the
//! call returns, so what the emulator acknowledged survives a killed process
//! (WAL: a commit is in the OS's hands), and memory stays flat however many
//! messages wait. Times are epoch milliseconds, passed in, so the rules can
//! be tested without waiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::error::{Code, SqsError};

/// A queue's attributes as SQS names them (the settable ones).
pub type Attributes = BTreeMap<String, String>;

/// SQS's defaults for the attributes a queue is not created with.
pub const DEFAULT_VISIBILITY_TIMEOUT: i64 = 30;
/// Four days.
pub const DEFAULT_RETENTION: i64 = 345_600;
/// 1 MiB, the largest message (and the default limit) since August 2025.
pub const MAX_MESSAGE_SIZE: i64 = 1_048_576;

/// A queue as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    /// Its name.
    pub name: String,
    /// What it was created with or set to.
    pub attributes: Attributes,
    /// Epoch seconds.
    pub created: i64,
    /// Epoch seconds.
    pub modified: i64,
    purged: Option<i64>,
}

/// Where a queue's messages go after too many receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The dead-letter queue's name (from its ARN).
    pub dlq: String,
    /// Receives before the move.
    pub max_receives: i64,
}

impl Queue {
    fn number(&self, name: &str, default: i64) -> i64 {
        self.attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Seconds a received message stays hidden.
    pub fn visibility_timeout(&self) -> i64 {
        self.number("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT)
    }

    /// Seconds a message is kept.
    pub fn retention(&self) -> i64 {
        self.number("MessageRetentionPeriod", DEFAULT_RETENTION)
    }

    /// Seconds a new message is hidden.
    pub fn delay(&self) -> i64 {
        self.number("DelaySeconds", 0)
    }

    /// Seconds a receive waits by default.
    pub fn receive_wait(&self) -> i64 {
        self.number("ReceiveMessageWaitTimeSeconds", 0)
    }

    /// Bytes of the largest message.
    pub fn max_message_size(&self) -> i64 {
        self.number("MaximumMessageSize", MAX_MESSAGE_SIZE)
    }

    /// The redrive policy, if any.
    pub fn redrive(&self) -> Option<Redrive> {
        let policy: serde_json::Value = serde_json::from_str(self.attributes.get("RedrivePolicy")?).ok()?;
        let arn = policy.get("deadLetterTargetArn")?.as_str()?;
        let max = match policy.get("maxReceiveCount")? {
            serde_json::Value::Number(n) => n.as_i64()?,
            serde_json::Value::String(s) => s.parse().ok()?,
            _ => return None,
        };
        Some(Redrive {
            dlq: arn.rsplit(':').next()?.to_owned(),
            max_receives: max,
        })
    }
}

/// An attribute's value as it takes effect: set, or SQS's default.
fn effective(attributes: &Attributes, name: &str) -> Option<String> {
    if let Some(v) = attributes.get(name) {
        return Some(v.clone());
    }
    let default = match name {
        "VisibilityTimeout" => DEFAULT_VISIBILITY_TIMEOUT,
        "MessageRetentionPeriod" => DEFAULT_RETENTION,
        "DelaySeconds" | "ReceiveMessageWaitTimeSeconds" => 0,
        "MaximumMessageSize" => MAX_MESSAGE_SIZE,
        "KmsDataKeyReusePeriodSeconds" => 300,
        "SqsManagedSseEnabled" => return Some("true".into()),
        _ => return None,
    };
    Some(default.to_string())
}

/// Check attributes for `CreateQueue` and `SetQueueAttributes` against
/// SQS's names and ranges.
pub fn validate_attributes(attributes: &Attributes) -> Result<(), SqsError> {
    fn range(name: &str, value: &str, lo: i64, hi: i64) -> Result<(), SqsError> {
        match value.parse::<i64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(()),
            _ => Err(SqsError::new(
                Code::InvalidAttributeValue,
                format!("Invalid value for the parameter {name}: {value} (from {lo} to {hi})"),
            )),
        }
    }
    for (name, value) in attributes {
        match name.as_str() {
            "VisibilityTimeout" => range(name, value, 0, 43_200)?,
            "MessageRetentionPeriod" => range(name, value, 60, 1_209_600)?,
            "DelaySeconds" => range(name, value, 0, 900)?,
            "ReceiveMessageWaitTimeSeconds" => range(name, value, 0, 20)?,
            "MaximumMessageSize" => range(name, value, 1_024, MAX_MESSAGE_SIZE)?,
            "KmsDataKeyReusePeriodSeconds" => range(name, value, 60, 86_400)?,
            "SqsManagedSseEnabled" if value == "true" || value == "false" => {}
            // The empty string removes the policy.
            "RedrivePolicy" if value.is_empty() => {}
            "RedrivePolicy" => {
                let q = Queue {
                    name: String::new(),
                    attributes: BTreeMap::from([(name.clone(), value.clone())]),
                    created: 0,
                    modified: 0,
                    purged: None,
                };
                match q.redrive() {
                    Some(r) if (1..=1_000).contains(&r.max_receives) => {}
                    _ => {
                        return Err(SqsError::new(
                            Code::InvalidAttributeValue,
                            format!(
                                "Value {value} for parameter RedrivePolicy is invalid: it needs \
                                 deadLetterTargetArn and a maxReceiveCount from 1 to 1000"
                            ),
                        ));
                    }
                }
            }
            "Policy" | "RedriveAllowPolicy" | "KmsMasterKeyId" => {}
            "FifoQueue" | "ContentBasedDeduplication" | "DeduplicationScope" | "FifoThroughputLimit" => {
                return Err(SqsError::new(
                    Code::UnsupportedOperation,
                    "FIFO queues are not emulated by the local stack (the pipeline uses standard queues)",
                ));
            }
            "SqsManagedSseEnabled" => {
                return Err(SqsError::new(
                    Code::InvalidAttributeValue,
                    format!("Invalid value for the parameter SqsManagedSseEnabled: {value}"),
                ));
            }
            _ => {
                return Err(SqsError::new(
                    Code::InvalidAttributeName,
                    format!("Unknown Attribute {name}."),
                ));
            }
        }
    }
    Ok(())
}

/// A message to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The body.
    pub body: String,
    /// Its MD5, hex.
    pub md5_of_body: String,
    /// The message attributes as the JSON protocol carries them, if any.
    pub attributes: Option<String>,
    /// Seconds to hide it (the queue's delay if none).
    pub delay: Option<i64>,
}

/// A message handed out by a receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Its id.
    pub id: String,
    /// The handle that deletes it or changes its visibility.
    pub receipt: String,
    /// The body.
    pub body: String,
    /// Its MD5, hex.
    pub md5_of_body: String,
    /// The message attributes as sent (JSON), if any.
    pub attributes: Option<String>,
    /// When it was sent, epoch ms.
    pub sent: i64,
    /// Receives so far, this one included.
    pub receives: i64,
    /// When it was first received, epoch ms.
    pub first_receive: i64,
}

/// Counts of a queue's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Visible now.
    pub visible: i64,
    /// Received and not yet visible again.
    pub in_flight: i64,
    /// Not yet visible for the first time.
    pub delayed: i64,
}

/// The store. One connection, used under the emulator's lock.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    purged INTEGER
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    md5_of_body TEXT NOT NULL,
    attributes TEXT,
    sent INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receives INTEGER NOT NULL DEFAULT 0,
    first_receive INTEGER,
    received INTEGER,
    receipt INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS messages_by_age ON messages (queue, sent);
";

impl Store {
    /// A store in `path` (created if need be), or in memory.
    pub fn open(path: Option<&Path>) -> rusqlite::Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        // WAL with NORMAL sync: a commit survives the process being killed
        // (not a power cut), and costs no fsync.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// The queue named, or `QueueDoesNotExist`.
    pub fn queue(&self, name: &str) -> Result<Queue, SqsError> {
        queue(&self.conn, name)
    }

    /// Create a queue; the same name with the same attributes is the same
    /// queue, with others an error.
    pub fn create_queue(&mut self, name: &str, attributes: &Attributes, now: i64) -> Result<(), SqsError> {
        validate_name(name)?;
        validate_attributes(attributes)?;
        self.check_dead_letter_target(attributes)?;
        if let Ok(existing) = self.queue(name) {
            // Compared as they take effect: a default sent explicitly is the same queue.
            let differs = attributes
                .iter()
                .any(|(k, v)| effective(&existing.attributes, k).as_deref() != Some(v.as_str()));
            return if differs {
                Err(SqsError::new(
                    Code::QueueNameExists,
                    format!(
                        "A queue already exists with the same name ({name}) and a different value for an attribute"
                    ),
                ))
            } else {
                Ok(())
            };
        }
        let json = serde_json::to_string(attributes).expect("a map of strings serializes");
        self.conn.execute(
            "INSERT INTO queues (name, attributes, created, modified) VALUES (?1, ?2, ?3, ?3)",
            params![name, json, now / 1000],
        )?;
        Ok(())
    }

    /// Replace the given attributes of a queue.
    pub fn set_attributes(&mut self, name: &str, attributes: &Attributes, now: i64) -> Result<(), SqsError> {
        validate_attributes(attributes)?;
        self.check_dead_letter_target(attributes)?;
        let mut q = self.queue(name)?;
        for (k, v) in attributes {
            // SQS removes a redrive policy set to the empty string.
            if k == "RedrivePolicy" && v.is_empty() {
                q.attributes.remove(k);
            } else {
                q.attributes.insert(k.clone(), v.clone());
            }
        }
        let json = serde_json::to_string(&q.attributes).expect("a map of strings serializes");
        self.conn.execute(
            "UPDATE queues SET attributes = ?2, modified = ?3 WHERE name = ?1",
            params![name, json, now / 1000],
        )?;
        Ok(())
    }

    /// A redrive policy must name a queue that exists.
    fn check_dead_letter_target(&self, attributes: &Attributes) -> Result<(), SqsError> {
        let Some(policy) = attributes.get("RedrivePolicy").filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let q = Queue {
            name: String::new(),
            attributes: BTreeMap::from([("RedrivePolicy".to_owned(), policy.clone())]),
            created: 0,
            modified: 0,
            purged: None,
        };
        match q.redrive() {
            Some(r) if self.queue(&r.dlq).is_ok() => Ok(()),
            _ => Err(SqsError::new(
                Code::InvalidParameterValue,
                format!(
                    "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
                ),
            )),
        }
    }

    /// Names of the queues starting with `prefix`, in order.
    pub fn list_queues(&self, prefix: &str) -> Result<Vec<String>, SqsError> {
        let mut stmt = self.conn.prepare("SELECT name FROM queues ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(names.into_iter().filter(|n| n.starts_with(prefix)).collect())
    }

    /// Delete a queue and its messages.
    pub fn delete_queue(&mut self, name: &str) -> Result<(), SqsError> {
        self.queue(name)?;
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM messages WHERE queue = ?1", [name])?;
        tx.execute("DELETE FROM queues WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    /// Delete a queue's messages; SQS allows one purge a minute.
    pub fn purge(&mut self, name: &str, now: i64) -> Result<(), SqsError> {
        let q = self.queue(name)?;
        if q.purged.is_some_and(|p| now - p < 60_000) {
            return Err(SqsError::new(
                Code::PurgeQueueInProgress,
                format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
            ));
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM messages WHERE queue = ?1", [name])?;
        tx.execute("UPDATE queues SET purged = ?2 WHERE name = ?1", params![name, now])?;
        tx.commit()?;
        Ok(())
    }

    /// Store messages (all or none); their ids, in order.
    pub fn send(&mut self, name: &str, messages: &[NewMessage], now: i64) -> Result<Vec<String>, SqsError> {
        let q = self.queue(name)?;
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(messages.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (queue, id, body, md5_of_body, attributes, sent, visible_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for m in messages {
                let id = uuid::Uuid::new_v4().to_string();
                let visible_at = now + m.delay.unwrap_or_else(|| q.delay()) * 1000;
                insert.execute(params![name, id, m.body, m.md5_of_body, m.attributes, now, visible_at])?;
                ids.push(id);
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Store messages on several queues in one transaction (a fan-out);
    /// returns the names of queues that do not exist (their messages dropped).
    pub fn send_many(&mut self, messages: &[(String, NewMessage)], now: i64) -> Result<Vec<String>, SqsError> {
        let tx = self.conn.transaction()?;
        let mut missing = Vec::new();
        {
            let mut queues: HashMap<&str, Option<Queue>> = HashMap::new();
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (queue, id, body, md5_of_body, attributes, sent, visible_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (name, m) in messages {
                if !queues.contains_key(name.as_str()) {
                    let q = match queue(&tx, name) {
                        Ok(q) => Some(q),
                        Err(e) if e.code == Code::QueueDoesNotExist => None,
                        Err(e) => return Err(e),
                    };
                    queues.insert(name, q);
                }
                let Some(q) = &queues[name.as_str()] else {
                    if !missing.contains(name) {
                        missing.push(name.clone());
                    }
                    continue;
                };
                let visible_at = now + m.delay.unwrap_or_else(|| q.delay()) * 1000;
                let id = uuid::Uuid::new_v4().to_string();
                insert.execute(params![name, id, m.body, m.md5_of_body, m.attributes, now, visible_at])?;
            }
        }
        tx.commit()?;
        Ok(missing)
    }

    /// Receive up to `max` visible messages, hiding each for `visibility`
    /// seconds (the queue's timeout if none). A message already received
    /// `maxReceiveCount` times is moved to the dead-letter queue instead.
    pub fn receive(
        &mut self,
        name: &str,
        max: usize,
        visibility: Option<i64>,
        now: i64,
    ) -> Result<Vec<Received>, SqsError> {
        let q = self.queue(name)?;
        let redrive = q
            .redrive()
            .filter(|r| r.dlq != name && queue(&self.conn, &r.dlq).is_ok());
        let hide_until = now + visibility.unwrap_or_else(|| q.visibility_timeout()) * 1000;
        let tx = self.conn.transaction()?;
        expire(&tx, &q, now)?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let want = max - out.len();
            let rows = {
                let mut select = tx.prepare_cached(
                    "SELECT seq, id, body, md5_of_body, attributes, sent, receives, first_receive
                     FROM messages WHERE queue = ?1 AND visible_at <= ?2
                     ORDER BY visible_at, seq LIMIT ?3",
                )?;
                let rows = select
                    .query_map(params![name, now, want as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            Received {
                                id: r.get(1)?,
                                receipt: String::new(),
                                body: r.get(2)?,
                                md5_of_body: r.get(3)?,
                                attributes: r.get(4)?,
                                sent: r.get(5)?,
                                receives: r.get(6)?,
                                first_receive: r.get::<_, Option<i64>>(7)?.unwrap_or(now),
                            },
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            let mut moved = false;
            for (seq, mut m) in rows {
                if !seen.insert(seq) {
                    continue;
                }
                if let Some(r) = redrive.as_ref().filter(|r| m.receives >= r.max_receives) {
                    // Moved as it is: id, body, attributes, receive count and
                    // enqueue time (retention counts from the first send).
                    tx.execute(
                        "UPDATE messages SET queue = ?2, visible_at = ?3, receipt = NULL WHERE seq = ?1",
                        params![seq, r.dlq, now],
                    )?;
                    moved = true;
                    continue;
                }
                let nonce: i64 = rand::random();
                tx.execute(
                    "UPDATE messages SET receives = receives + 1, first_receive = COALESCE(first_receive, ?2),
                         received = ?2, visible_at = ?3, receipt = ?4 WHERE seq = ?1",
                    params![seq, now, hide_until, nonce],
                )?;
                m.receives += 1;
                m.receipt = Receipt {
                    queue: name.to_owned(),
                    seq,
                    nonce,
                }
                .encode();
                out.push(m);
            }
            if !moved || out.len() >= max {
                break;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Delete the message a receipt names. A handle of an earlier receive
    /// (the message was received again since) succeeds and deletes nothing,
    /// as SQS documents; so does one of a message already deleted.
    pub fn delete(&mut self, name: &str, receipt: &str) -> Result<(), SqsError> {
        self.queue(name)?;
        let r = Receipt::decode(receipt, name)?;
        self.conn.execute(
            "DELETE FROM messages WHERE seq = ?1 AND queue = ?2 AND receipt = ?3",
            params![r.seq, name, r.nonce],
        )?;
        Ok(())
    }

    /// Hide a received message for `timeout` seconds from now.
    pub fn change_visibility(&mut self, name: &str, receipt: &str, timeout: i64, now: i64) -> Result<(), SqsError> {
        self.queue(name)?;
        let r = Receipt::decode(receipt, name)?;
        if !(0..=43_200).contains(&timeout) {
            return Err(SqsError::new(
                Code::InvalidParameterValue,
                format!(
                    "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."
                ),
            ));
        }
        let row: Option<(i64, Option<i64>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT visible_at, received, receipt FROM messages WHERE seq = ?1 AND queue = ?2",
                params![r.seq, name],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let gone = || {
            SqsError::new(
                Code::InvalidParameterValue,
                format!(
                    "Value {receipt} for parameter ReceiptHandle is invalid. Reason: Message does not exist \
                     or is not available for visibility timeout change."
                ),
            )
        };
        let Some((visible_at, received, nonce)) = row else {
            return Err(gone());
        };
        if nonce != Some(r.nonce) {
            return Err(gone());
        }
        if visible_at <= now {
            // Its visibility lapsed and nobody received it since: AWS answers
            // OK and leaves it visible (as recorded against AWS by LocalStack's
            // tests; the docs name `MessageNotInflight` without saying when).
            return Ok(());
        }
        // A message stays hidden at most 12 hours from the receive that hid it.
        if let Some(received) = received {
            if now + timeout * 1000 - received > 43_200_000 {
                return Err(SqsError::new(
                    Code::InvalidParameterValue,
                    format!(
                        "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout \
                         for the message is beyond the limit [43200 seconds]"
                    ),
                ));
            }
        }
        self.conn.execute(
            "UPDATE messages SET visible_at = ?2 WHERE seq = ?1",
            params![r.seq, now + timeout * 1000],
        )?;
        Ok(())
    }

    /// Counts of a queue's messages (after dropping the expired ones).
    pub fn depth(&mut self, name: &str, now: i64) -> Result<Depth, SqsError> {
        let q = self.queue(name)?;
        expire(&self.conn, &q, now)?;
        let count =
            |sql: &str| -> Result<i64, SqsError> { Ok(self.conn.query_row(sql, params![name, now], |r| r.get(0))?) };
        Ok(Depth {
            visible: count("SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at <= ?2")?,
            in_flight: count("SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at > ?2 AND receives > 0")?,
            delayed: count("SELECT COUNT(*) FROM messages WHERE queue = ?1 AND visible_at > ?2 AND receives = 0")?,
        })
    }

    /// When the next hidden message of the queue becomes visible, if any.
    pub fn next_visible(&self, name: &str, now: i64) -> Result<Option<i64>, SqsError> {
        Ok(self.conn.query_row(
            "SELECT MIN(visible_at) FROM messages WHERE queue = ?1 AND visible_at > ?2",
            params![name, now],
            |r| r.get(0),
        )?)
    }

    /// Make every in-flight message of a queue visible now: its consumers
    /// are gone (the process that ran them stopped). Returns their bodies.
    pub fn release_in_flight(&mut self, name: &str, now: i64) -> Result<Vec<String>, SqsError> {
        self.queue(name)?;
        let tx = self.conn.transaction()?;
        let bodies = {
            let mut stmt =
                tx.prepare("SELECT body FROM messages WHERE queue = ?1 AND receives > 0 AND visible_at > ?2")?;
            let rows = stmt
                .query_map(params![name, now], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        tx.execute(
            "UPDATE messages SET visible_at = ?2 WHERE queue = ?1 AND receives > 0 AND visible_at > ?2",
            params![name, now],
        )?;
        tx.commit()?;
        Ok(bodies)
    }
}

fn queue(conn: &Connection, name: &str) -> Result<Queue, SqsError> {
    conn.query_row(
        "SELECT name, attributes, created, modified, purged FROM queues WHERE name = ?1",
        [name],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        },
    )
    .optional()?
    .map(|(name, attrs, created, modified, purged)| Queue {
        name,
        attributes: serde_json::from_str(&attrs).unwrap_or_default(),
        created,
        modified,
        purged,
    })
    .ok_or_else(|| SqsError::new(Code::QueueDoesNotExist, "The specified queue does not exist."))
}

/// Drop the messages older than the queue's retention period.
fn expire(conn: &Connection, q: &Queue, now: i64) -> Result<usize, SqsError> {
    Ok(conn.execute(
        "DELETE FROM messages WHERE queue = ?1 AND sent < ?2",
        params![q.name, now - q.retention() * 1000],
    )?)
}

/// 1 to 80 of letters, digits, `-` and `_` (standard queues).
pub fn validate_name(name: &str) -> Result<(), SqsError> {
    if name.ends_with(".fifo") {
        return Err(SqsError::new(
            Code::UnsupportedOperation,
            "FIFO queues are not emulated by the local stack (the pipeline uses standard queues)",
        ));
    }
    let ok = (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SqsError::new(
            Code::InvalidParameterValue,
            format!("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length: {name:?}"),
        ))
    }
}

/// What a receipt handle carries: the queue, the message, and which
/// receive of it (a fresh nonce each time).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receipt {
    queue: String,
    seq: i64,
    nonce: i64,
}

impl Receipt {
    fn encode(&self) -> String {
        let queue: String = self.queue.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{:x}-{:016x}-{queue}", self.seq, self.nonce as u64)
    }

    fn decode(handle: &str, queue: &str) -> Result<Self, SqsError> {
        let invalid = || {
            SqsError::new(
                Code::ReceiptHandleIsInvalid,
                format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
            )
        };
        let mut parts = handle.splitn(3, '-');
        let seq = parts
            .next()
            .and_then(|s| i64::from_str_radix(s, 16).ok())
            .ok_or_else(invalid)?;
        let nonce = parts
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(invalid)? as i64;
        let hex = parts.next().ok_or_else(invalid)?;
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        if bytes != queue.as_bytes() {
            return Err(invalid());
        }
        Ok(Receipt {
            queue: queue.to_owned(),
            seq,
            nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn message(body: &str) -> NewMessage {
        NewMessage {
            body: body.into(),
            md5_of_body: String::new(),
            attributes: None,
            delay: None,
        }
    }

    fn store_with(attrs: &[(&str, &str)]) -> Store {
        let mut s = Store::open(None).unwrap();
        let attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        s.create_queue("q", &attrs, T0).unwrap();
        s
    }

    #[test]
    fn a_receive_hides_for_the_visibility_timeout_and_counts_once() {
        let mut s = store_with(&[("VisibilityTimeout", "10")]);
        s.send("q", &[message("a")], T0).unwrap();
        let got = s.receive("q", 10, None, T0).unwrap();
        assert_eq!((got.len(), got[0].receives, got[0].first_receive), (1, 1, T0));
        assert!(s.receive("q", 10, None, T0 + 9_999).unwrap().is_empty(), "still hidden");
        let again = s.receive("q", 10, None, T0 + 10_000).unwrap();
        assert_eq!(
            (again[0].receives, again[0].first_receive),
            (2, T0),
            "one more receive, first unchanged"
        );
        assert_ne!(again[0].receipt, got[0].receipt, "a new handle per receive");
    }

    #[test]
    fn an_older_handle_deletes_nothing_and_the_newest_deletes() {
        let mut s = store_with(&[("VisibilityTimeout", "1")]);
        s.send("q", &[message("a")], T0).unwrap();
        let first = s.receive("q", 1, None, T0).unwrap().remove(0);
        let second = s.receive("q", 1, None, T0 + 1_000).unwrap().remove(0);
        s.delete("q", &first.receipt).unwrap();
        assert_eq!(
            s.depth("q", T0 + 1_000).unwrap().in_flight,
            1,
            "the stale handle deleted nothing"
        );
        s.delete("q", &second.receipt).unwrap();
        assert_eq!(s.depth("q", T0 + 1_000).unwrap(), Depth::default());
        s.delete("q", &second.receipt).unwrap();
    }

    #[test]
    fn bad_handles_are_refused() {
        let mut s = store_with(&[]);
        s.create_queue("other", &Attributes::new(), T0).unwrap();
        s.send("q", &[message("a")], T0).unwrap();
        let m = s.receive("q", 1, None, T0).unwrap().remove(0);
        let other_queue = format!("{}72", &m.receipt[..m.receipt.len() - 2]);
        for bad in ["", "nonsense", "1-2", &other_queue] {
            let e = s.delete("q", bad).unwrap_err();
            assert_eq!(e.code, Code::ReceiptHandleIsInvalid, "{bad:?}");
        }
        assert_eq!(
            s.delete("other", &m.receipt).unwrap_err().code,
            Code::ReceiptHandleIsInvalid
        );
        assert_eq!(s.delete("nope", &m.receipt).unwrap_err().code, Code::QueueDoesNotExist);
    }

    #[test]
    fn redrive_after_exactly_max_receives_keeping_the_message() {
        let mut s = store_with(&[]);
        s.create_queue("dlq", &Attributes::new(), T0).unwrap();
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#;
        s.set_attributes("q", &Attributes::from([("RedrivePolicy".into(), policy.into())]), T0)
            .unwrap();
        let id = s.send("q", &[message("poison")], T0).unwrap().remove(0);
        let mut receives = 0;
        let mut now = T0;
        loop {
            let got = s.receive("q", 10, Some(0), now).unwrap();
            if got.is_empty() {
                break;
            }
            receives += 1;
            assert_eq!(got[0].receives, receives);
            now += 1;
            assert!(receives < 10);
        }
        assert_eq!(receives, 3, "received maxReceiveCount times, then moved");
        let dead = s.receive("dlq", 10, None, now).unwrap();
        assert_eq!(
            (dead.len(), dead[0].id.as_str(), dead[0].body.as_str()),
            (1, id.as_str(), "poison")
        );
        assert_eq!(dead[0].sent, T0, "the enqueue time is kept");
        // An empty policy removes redrive.
        s.set_attributes("q", &Attributes::from([("RedrivePolicy".into(), String::new())]), now)
            .unwrap();
        assert_eq!(s.queue("q").unwrap().redrive(), None);
    }

    #[test]
    fn retention_drops_old_messages() {
        let mut s = store_with(&[("MessageRetentionPeriod", "60")]);
        s.send("q", &[message("old")], T0).unwrap();
        s.send("q", &[message("new")], T0 + 30_000).unwrap();
        let got = s.receive("q", 10, None, T0 + 60_001).unwrap();
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["new"]);
    }

    #[test]
    fn delays_and_visibility_changes() {
        let mut s = store_with(&[("DelaySeconds", "5")]);
        s.send("q", &[message("late")], T0).unwrap();
        assert_eq!(s.depth("q", T0).unwrap().delayed, 1);
        assert!(s.receive("q", 1, None, T0 + 4_999).unwrap().is_empty());
        let m = s.receive("q", 1, None, T0 + 5_000).unwrap().remove(0);
        s.change_visibility("q", &m.receipt, 0, T0 + 5_001).unwrap();
        s.change_visibility("q", &m.receipt, 10, T0 + 5_002).unwrap();
        assert_eq!(
            s.depth("q", T0 + 5_002).unwrap().visible,
            1,
            "visible again: a change is a no-op"
        );
        let m = s.receive("q", 1, None, T0 + 5_002).unwrap().remove(0);
        let e = s.change_visibility("q", &m.receipt, 43_200, T0 + 6_000).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameterValue, "beyond 12 hours from this receive");
        assert_eq!(
            s.change_visibility("q", &m.receipt, 43_201, T0).unwrap_err().code,
            Code::InvalidParameterValue
        );
        s.delete("q", &m.receipt).unwrap();
        let e = s.change_visibility("q", &m.receipt, 1, T0 + 6_000).unwrap_err();
        assert_eq!(e.code, Code::InvalidParameterValue, "deleted");
    }

    #[test]
    fn create_is_idempotent_only_with_the_same_attributes() {
        let mut s = store_with(&[("VisibilityTimeout", "10")]);
        let same = Attributes::from([("VisibilityTimeout".into(), "10".into())]);
        s.create_queue("q", &same, T0).unwrap();
        s.create_queue("q", &Attributes::new(), T0).unwrap();
        let default = Attributes::from([("DelaySeconds".into(), "0".into())]);
        s.create_queue("q", &default, T0).unwrap();
        let other = Attributes::from([("VisibilityTimeout".into(), "11".into())]);
        assert_eq!(s.create_queue("q", &other, T0).unwrap_err().code, Code::QueueNameExists);
        let orphan = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:nope","maxReceiveCount":1}"#;
        let attrs = Attributes::from([("RedrivePolicy".into(), orphan.into())]);
        assert_eq!(
            s.create_queue("r", &attrs, T0).unwrap_err().code,
            Code::InvalidParameterValue
        );
        for (k, v, code) in [
            ("VisibilityTimeout", "43201", Code::InvalidAttributeValue),
            ("MessageRetentionPeriod", "59", Code::InvalidAttributeValue),
            ("RedrivePolicy", r#"{"maxReceiveCount":1}"#, Code::InvalidAttributeValue),
            ("Colour", "red", Code::InvalidAttributeName),
            ("FifoQueue", "true", Code::UnsupportedOperation),
        ] {
            let attrs = Attributes::from([(k.into(), v.into())]);
            assert_eq!(s.create_queue("r", &attrs, T0).unwrap_err().code, code, "{k}={v}");
        }
        for bad in ["", "a.fifo", "has space", &"x".repeat(81)] {
            assert!(s.create_queue(bad, &Attributes::new(), T0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn purge_once_a_minute_and_release_in_flight() {
        let mut s = store_with(&[]);
        s.send("q", &[message("a"), message("b")], T0).unwrap();
        assert_eq!(s.receive("q", 1, None, T0).unwrap().len(), 1);
        assert_eq!(s.release_in_flight("q", T0).unwrap(), ["a"]);
        assert_eq!(s.depth("q", T0).unwrap().visible, 2);
        s.purge("q", T0).unwrap();
        assert_eq!(s.depth("q", T0).unwrap(), Depth::default());
        assert_eq!(s.purge("q", T0 + 59_999).unwrap_err().code, Code::PurgeQueueInProgress);
        s.purge("q", T0 + 60_000).unwrap();
    }

    #[test]
    fn a_file_store_keeps_everything_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqs.sqlite");
        let receipt = {
            let mut s = Store::open(Some(&path)).unwrap();
            s.create_queue("q", &Attributes::new(), T0).unwrap();
            s.send("q", &[message("a"), message("b")], T0).unwrap();
            s.receive("q", 1, None, T0).unwrap().remove(0).receipt
        };
        let mut s = Store::open(Some(&path)).unwrap();
        assert_eq!(
            s.depth("q", T0).unwrap(),
            Depth {
                visible: 1,
                in_flight: 1,
                delayed: 0
            }
        );
        s.delete("q", &receipt).unwrap();
        assert_eq!(s.depth("q", T0).unwrap().in_flight, 0);
    }
}
