//! The events table: conditional writes of events, and the manifest's life
//! cycle (create, lease, checkpoint, finish).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use schema::items::{to_item, Chunk, ChunkStatus, FileStatus, Manifest, Upload};
use schema::keys;

use crate::error::IngestError;

/// Counters of one file, as far as the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Lines read.
    pub rows: u64,
    /// Accepted among them.
    pub accepted: u64,
    /// Rejected among them.
    pub rejected: u64,
    /// Events written by this file's runs.
    pub written: u64,
    /// Events found already there.
    pub already_present: u64,
    /// Last line known written (with all before it).
    pub line: u64,
    /// Byte offset just past that line.
    pub byte: u64,
}

impl Progress {
    /// The counters a chunk holds, as far as its checkpoint.
    pub fn of_chunk(c: &Chunk) -> Self {
        Progress {
            rows: c.rows,
            accepted: c.accepted,
            rejected: c.rejected,
            written: c.written,
            already_present: c.already_present,
            line: c.checkpoint_line,
            byte: c.checkpoint_byte,
        }
    }

    /// The counters a manifest holds.
    pub fn of(m: &Manifest) -> Self {
        Progress {
            rows: m.rows,
            accepted: m.accepted,
            rejected: m.rejected,
            written: m.written,
            already_present: m.already_present,
            line: m.checkpoint_line,
            byte: m.checkpoint_byte,
        }
    }
}

/// The `SET` clauses every progress update makes (see `EventStore::progress_update`).
const PROGRESS_SET: &str = "#rows = :rows, accepted = :acc, rejected = :rej, written = :wr, \
     already_present = :ap, checkpoint_line = :line, checkpoint_byte = :byte, lease_until = :until, updated_at = :now";

/// The result of creating a manifest.
#[derive(Debug)]
pub enum Created {
    /// New content: the caller holds the lease.
    New,
    /// The content is known: its manifest as it was.
    Exists(Box<Manifest>),
}

/// The events table, through the real DynamoDB client.
#[derive(Debug, Clone)]
pub struct EventStore {
    client: Client,
    /// Shared: the store is cloned into every line's write task.
    table: std::sync::Arc<str>,
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn manifest_key(file_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (keys::PK.to_owned(), s(keys::manifest_pk(file_id))),
        (keys::SK.to_owned(), n(0)),
    ])
}

fn chunk_key(file_id: &str, index: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (keys::PK.to_owned(), s(keys::manifest_pk(file_id))),
        (keys::SK.to_owned(), n(keys::chunk_sk(index))),
    ])
}

fn is_ccf<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .is_some_and(|se| se.code() == Some("ConditionalCheckFailedException"))
}

/// How the store's requests are retried: DynamoDB throttling
/// (`ThrottlingException`, `ProvisionedThroughputExceededException`,
/// `RequestLimitExceeded`) is absorbed: ten attempts with exponential
/// backoff and full jitter (50 ms doubling to a 10 s cap, at most about 23 s
/// of waits), per request. Beyond that, or when the SDK's shared retry quota
/// runs dry under a storm of throttles, the write fails and the run stops at
/// its checkpoint and goes on as a continuation (`handler`). Standard mode, not adaptive: a
/// throttle is one partition's (a page of 1,000 lines, or the manifest), and
/// adaptive mode's rate limiter is the whole client's, so one hot partition
/// would slow every write of the file; measured here, adaptive mode took 97 s
/// for 400 lines with one put in ten throttled, standard mode 2 s.
pub fn retry_config() -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(10)
        .with_initial_backoff(std::time::Duration::from_millis(50))
        .with_max_backoff(std::time::Duration::from_secs(10))
}

impl EventStore {
    /// A store on `table`, with [`retry_config`] whatever `client` was built with.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let client = Client::from_conf(client.config().to_builder().retry_config(retry_config()).build());
        EventStore {
            client,
            table: table.into().into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn err<'a, E, R>(file_id: &'a str, operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> IngestError + 'a
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        move |e| IngestError::Dynamo {
            file_id: file_id.to_owned(),
            operation,
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    /// Create the manifest of new content, or return the existing one in the
    /// same request (`ReturnValuesOnConditionCheckFailure`).
    pub async fn create_manifest(&self, m: &Manifest) -> Result<Created, IngestError> {
        let res = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(to_item(m)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(_) => Ok(Created::New),
            Err(e) => {
                use aws_sdk_dynamodb::operation::put_item::PutItemError;
                if let Some(PutItemError::ConditionalCheckFailedException(ccf)) = e.as_service_error() {
                    if let Some(item) = ccf.item() {
                        let old: Manifest =
                            serde_dynamo::from_item(item.clone()).map_err(|err| IngestError::Dynamo {
                                file_id: m.file_id.clone(),
                                operation: "PutItem",
                                message: format!("existing manifest does not decode: {err}"),
                            })?;
                        return Ok(Created::Exists(Box::new(old)));
                    }
                }
                Err(Self::err(&m.file_id, "PutItem")(e))
            }
        }
    }

    /// Record another upload of known content under `key`.
    pub async fn add_key(&self, file_id: &str, key: &str, now: &str) -> Result<(), IngestError> {
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression("ADD #keys :k, uploads :one SET updated_at = :now")
            .expression_attribute_names("#keys", "keys")
            .expression_attribute_values(":k", AttributeValue::Ss(vec![key.to_owned()]))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// Take over a file left `ingesting` (by a crashed or stopped run) once its
    /// lease has run out. `Ok(None)`: another run holds it.
    pub async fn acquire(
        &self,
        file_id: &str,
        key: &str,
        now_ms: i64,
        lease_until_ms: i64,
        now: &str,
    ) -> Result<Option<Manifest>, IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression(
                "SET lease_until = :until, attempts = attempts + :one, updated_at = :now ADD #keys :k, uploads :one",
            )
            .condition_expression("#status = :ingesting AND lease_until < :nowms")
            .expression_attribute_names("#keys", "keys")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":nowms", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":k", AttributeValue::Ss(vec![key.to_owned()]))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let m = serde_dynamo::from_item(item).map_err(|err| IngestError::Dynamo {
                    file_id: file_id.to_owned(),
                    operation: "UpdateItem",
                    message: format!("manifest does not decode: {err}"),
                })?;
                Ok(Some(m))
            }
            Err(e) if is_ccf(&e) => Ok(None),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Write one event unless it exists. `Ok(true)`: written now; `Ok(false)`: it was there.
    pub async fn put_event(&self, file_id: &str, item: HashMap<String, AttributeValue>) -> Result<bool, IngestError> {
        let res = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(Self::err(file_id, "PutItem")(e)),
        }
    }

    /// Save progress (and the header, which a resumed run needs). `lease_until_ms`
    /// extends the lease, or, at 0, releases it for an immediate retry.
    pub async fn checkpoint(
        &self,
        file_id: &str,
        p: &Progress,
        header: &[String],
        lease_until_ms: i64,
        now: &str,
    ) -> Result<(), IngestError> {
        let header = AttributeValue::L(header.iter().map(|h| s(h.clone())).collect());
        self.progress_update(file_id, p, lease_until_ms, now)
            .update_expression(format!("SET {PROGRESS_SET}, header = :h"))
            .expression_attribute_values(":h", header)
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// Give the manifest its final status and counts, and release the lease.
    pub async fn finish(
        &self,
        file_id: &str,
        status: FileStatus,
        reason: Option<&str>,
        p: &Progress,
        now: &str,
    ) -> Result<(), IngestError> {
        let mut req = self
            .progress_update(file_id, p, 0, now)
            .expression_attribute_values(":st", s(status.as_str()));
        let mut expr = format!("SET {PROGRESS_SET}, #status = :st, completed_at = :now");
        if let Some(r) = reason {
            expr.push_str(", reason = :reason");
            req = req.expression_attribute_values(":reason", s(r));
        }
        req.update_expression(expr)
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// An update of a manifest still `ingesting`, with the values of
    /// [`PROGRESS_SET`] bound: counters, checkpoint, lease and time.
    fn progress_update(
        &self,
        file_id: &str,
        p: &Progress,
        lease_until_ms: i64,
        now: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .condition_expression("#status = :ingesting")
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":rows", n(p.rows))
            .expression_attribute_values(":acc", n(p.accepted))
            .expression_attribute_values(":rej", n(p.rejected))
            .expression_attribute_values(":wr", n(p.written))
            .expression_attribute_values(":ap", n(p.already_present))
            .expression_attribute_values(":line", n(p.line))
            .expression_attribute_values(":byte", n(p.byte))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
    }

    /// Record a failed manifest for something that has no content to identify it by
    /// (an object deleted before it was read). Idempotent.
    pub async fn put_failed_manifest(&self, m: &Manifest) -> Result<(), IngestError> {
        match self.create_manifest(m).await? {
            Created::New | Created::Exists(_) => Ok(()),
        }
    }

    /// Record the latest upload under an object key.
    pub async fn put_upload(&self, u: &Upload) -> Result<(), IngestError> {
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(to_item(u)))
            .send()
            .await
            .map_err(Self::err(&u.file_id, "PutItem"))?;
        Ok(())
    }

    /// The latest upload recorded under `bucket`/`key`, if any.
    pub async fn upload(&self, bucket: &str, key: &str) -> Result<Option<Upload>, IngestError> {
        let k = HashMap::from([
            (keys::PK.to_owned(), s(keys::upload_pk(bucket, key))),
            (keys::SK.to_owned(), n(0)),
        ]);
        self.get(key, k, "upload record").await
    }

    /// End the lease a run holds on a file still `ingesting`, so the next run
    /// takes it over at once; for a run known to be dead (its process was
    /// killed). `Ok(false)`: the file is not ingesting.
    pub async fn release_lease(&self, file_id: &str) -> Result<bool, IngestError> {
        self.void_lease(file_id, manifest_key(file_id), FileStatus::Ingesting.as_str())
            .await
    }

    /// End the lease on a pending chunk, as [`EventStore::release_lease`].
    pub async fn release_chunk_lease(&self, file_id: &str, index: u64) -> Result<bool, IngestError> {
        self.void_lease(file_id, chunk_key(file_id, index), ChunkStatus::Pending.as_str())
            .await
    }

    async fn void_lease(
        &self,
        file_id: &str,
        key: HashMap<String, AttributeValue>,
        status: &str,
    ) -> Result<bool, IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .update_expression("SET lease_until = :zero")
            .condition_expression("#status = :status")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":status", s(status))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Read a manifest.
    pub async fn manifest(&self, file_id: &str) -> Result<Option<Manifest>, IngestError> {
        self.get(file_id, manifest_key(file_id), "manifest").await
    }

    /// Read one item of a file consistently; `what` names it in errors.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        file_id: &str,
        key: HashMap<String, AttributeValue>,
        what: &str,
    ) -> Result<Option<T>, IngestError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(Self::err(file_id, "GetItem"))?;
        out.item
            .map(serde_dynamo::from_item)
            .transpose()
            .map_err(|err| IngestError::Dynamo {
                file_id: file_id.to_owned(),
                operation: "GetItem",
                message: format!("{what} does not decode: {err}"),
            })
    }

    // --- Chunked files: the plan, and each chunk's life cycle. ---

    /// Store planned chunks. One already there is left as it is: planning
    /// again yields the same chunks, and one may be running or done.
    pub async fn put_chunks(&self, chunks: &[Chunk]) -> Result<(), IngestError> {
        let puts = chunks.iter().map(|c| async move {
            let res = self
                .client
                .put_item()
                .table_name(&*self.table)
                .set_item(Some(to_item(c)))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match res {
                Ok(_) => Ok(()),
                Err(e) if is_ccf(&e) => Ok(()),
                Err(e) => Err(Self::err(&c.file_id, "PutItem")(e)),
            }
        });
        futures::future::try_join_all(puts).await.map(|_| ())
    }

    /// Mark the file as chunked, with the header every chunk reads under.
    pub async fn start_plan(
        &self,
        file_id: &str,
        header: &[String],
        lease_until_ms: i64,
        now: &str,
    ) -> Result<(), IngestError> {
        let header = AttributeValue::L(header.iter().map(|h| s(h.clone())).collect());
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression("SET chunked = :t, header = :h, lease_until = :until, updated_at = :now")
            .condition_expression("#status = :ingesting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":h", header)
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// Record how far the plan has come (after its chunks' tasks are sent);
    /// `total`, once the plan reached the end of the file.
    #[allow(clippy::too_many_arguments)]
    pub async fn plan_progress(
        &self,
        file_id: &str,
        byte: u64,
        line: u64,
        planned: u64,
        total: Option<u64>,
        lease_until_ms: i64,
        now: &str,
    ) -> Result<(), IngestError> {
        let mut expr =
            "SET plan_byte = :b, plan_line = :l, chunks_planned = :p, lease_until = :until, updated_at = :now"
                .to_owned();
        let mut req = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .condition_expression("#status = :ingesting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":b", n(byte))
            .expression_attribute_values(":l", n(line))
            .expression_attribute_values(":p", n(planned))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()));
        if let Some(t) = total {
            expr.push_str(", chunks_total = :t");
            req = req.expression_attribute_values(":t", n(t));
        }
        req.update_expression(expr)
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// Read a chunk.
    pub async fn chunk(&self, file_id: &str, index: u64) -> Result<Option<Chunk>, IngestError> {
        self.get(file_id, chunk_key(file_id, index), &format!("chunk {index}"))
            .await
    }

    /// Take a pending chunk whose lease has run out (or was never taken).
    /// `Ok(None)`: it is done, leased by another run, or not planned.
    pub async fn acquire_chunk(
        &self,
        file_id: &str,
        index: u64,
        now_ms: i64,
        lease_until_ms: i64,
        now: &str,
    ) -> Result<Option<Chunk>, IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(chunk_key(file_id, index)))
            .update_expression("SET lease_until = :until, attempts = attempts + :one, updated_at = :now")
            .condition_expression("#status = :pending AND lease_until < :nowms")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":nowms", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => serde_dynamo::from_item(out.attributes.unwrap_or_default())
                .map(Some)
                .map_err(|err| IngestError::Dynamo {
                    file_id: file_id.to_owned(),
                    operation: "UpdateItem",
                    message: format!("chunk {index} does not decode: {err}"),
                }),
            Err(e) if is_ccf(&e) => Ok(None),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Save a chunk's progress; `lease_until_ms` 0 releases it.
    pub async fn checkpoint_chunk(
        &self,
        file_id: &str,
        index: u64,
        p: &Progress,
        lease_until_ms: i64,
        now: &str,
    ) -> Result<(), IngestError> {
        self.chunk_update(file_id, index, p, lease_until_ms, now)
            .update_expression(format!("SET {PROGRESS_SET}"))
            .condition_expression("#status = :pending")
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    /// Add a finished chunk's counts to its file, once: the chunk's index
    /// joins `chunks_done` in the same conditional update. `Ok(false)`: it
    /// was counted before (a redelivered task), or the file is final.
    pub async fn count_chunk(&self, file_id: &str, index: u64, p: &Progress, now: &str) -> Result<bool, IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression(
                "ADD chunks_done :set, #rows :rows, accepted :acc, rejected :rej, written :wr, already_present :ap \
                 SET updated_at = :now",
            )
            .condition_expression(
                "#status = :ingesting AND (attribute_not_exists(chunks_done) OR NOT contains(chunks_done, :i))",
            )
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":set", AttributeValue::Ns(vec![index.to_string()]))
            .expression_attribute_values(":i", n(index))
            .expression_attribute_values(":rows", n(p.rows))
            .expression_attribute_values(":acc", n(p.accepted))
            .expression_attribute_values(":rej", n(p.rejected))
            .expression_attribute_values(":wr", n(p.written))
            .expression_attribute_values(":ap", n(p.already_present))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Mark a chunk done with its final counts (after [`Self::count_chunk`]).
    /// Only a pending chunk: a run that lost a race to another (a lease
    /// overrun) leaves the winner's counts, which are the manifest's.
    pub async fn chunk_done(&self, file_id: &str, index: u64, p: &Progress, now: &str) -> Result<(), IngestError> {
        let res = self
            .chunk_update(file_id, index, p, 0, now)
            .update_expression(format!("SET {PROGRESS_SET}, #status = :done"))
            .condition_expression("#status = :pending")
            .expression_attribute_values(":done", s(ChunkStatus::Done.as_str()))
            .expression_attribute_values(":pending", s(ChunkStatus::Pending.as_str()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_ccf(&e) => Ok(()),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Mark a chunk done whose counts are already in its file (its run
    /// stopped between counting and marking).
    pub async fn mark_chunk_done(&self, file_id: &str, index: u64, now: &str) -> Result<(), IngestError> {
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(chunk_key(file_id, index)))
            .update_expression("SET #status = :done, lease_until = :zero, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s(ChunkStatus::Done.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(now))
            .send()
            .await
            .map_err(Self::err(file_id, "UpdateItem"))?;
        Ok(())
    }

    fn chunk_update(
        &self,
        file_id: &str,
        index: u64,
        p: &Progress,
        lease_until_ms: i64,
        now: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(chunk_key(file_id, index)))
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":rows", n(p.rows))
            .expression_attribute_values(":acc", n(p.accepted))
            .expression_attribute_values(":rej", n(p.rejected))
            .expression_attribute_values(":wr", n(p.written))
            .expression_attribute_values(":ap", n(p.already_present))
            .expression_attribute_values(":line", n(p.line))
            .expression_attribute_values(":byte", n(p.byte))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":now", s(now))
    }

    /// Make a chunked file complete, if its plan is complete and every chunk
    /// counted. Whoever runs this last wins the condition; everyone else, and
    /// every later call, gets `Ok(false)`: the file completes exactly once.
    pub async fn complete_chunked(&self, file_id: &str, now: &str) -> Result<bool, IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression(
                "SET #status = :complete, completed_at = :now, updated_at = :now, lease_until = :zero, \
                 checkpoint_line = #rows",
            )
            .condition_expression("#status = :ingesting AND chunks_total = size(chunks_done)")
            .expression_attribute_names("#rows", "rows")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":complete", s(FileStatus::Complete.as_str()))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(now))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_ccf(&e) => Ok(false),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }

    /// Fail a chunked file as a whole (its counters stay the chunks' sums).
    pub async fn fail_file(&self, file_id: &str, reason: &str, now: &str) -> Result<(), IngestError> {
        let res = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(manifest_key(file_id)))
            .update_expression(
                "SET #status = :failed, reason = :r, completed_at = :now, updated_at = :now, lease_until = :zero",
            )
            .condition_expression("#status = :ingesting")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":failed", s(FileStatus::Failed.as_str()))
            .expression_attribute_values(":ingesting", s(FileStatus::Ingesting.as_str()))
            .expression_attribute_values(":r", s(reason))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", s(now))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_ccf(&e) => Ok(()),
            Err(e) => Err(Self::err(file_id, "UpdateItem")(e)),
        }
    }
}
