//! One object to events: identify, claim, stream, write, checkpoint, finish.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use futures::stream::{FuturesOrdered, StreamExt};
use schema::items::{accepted_item, to_item, EventItem, EventType, FileStatus, Manifest, Upload, UploadOutcome};
use schema::{Dataset, Registry};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::decode::{self, Compression};

use crate::config::Config;
use crate::error::IngestError;
use crate::notification::ObjectRef;
use crate::object::{self, Gone};
use crate::reader::{Line, LineReader, ReadError, Start};
use crate::store::{Created, EventStore, Progress};

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Content identity.
    pub file_id: String,
    /// New content, a duplicate, or unreadable.
    pub outcome: UploadOutcome,
    /// The manifest's status after this run.
    pub status: FileStatus,
    /// Why the file failed.
    pub reason: Option<String>,
    /// The file's counters.
    pub progress: Progress,
}

/// Build the item of one line: the pure part of the hot path.
pub fn line_item(file_id: &str, dataset: &Dataset, line: Line) -> (HashMap<String, AttributeValue>, EventType) {
    match line.outcome {
        Ok(fields) => (
            accepted_item(file_id, line.number, &dataset.name, dataset.version, fields),
            EventType::Accepted,
        ),
        Err(why) => (
            to_item(&EventItem::rejected(
                file_id,
                line.number,
                &dataset.name,
                dataset.version,
                &line.raw,
                why,
            )),
            EventType::Rejected,
        ),
    }
}

/// A line ready to write: built on the reading thread, so the async side only sends.
struct Built {
    number: u64,
    end: u64,
    item: HashMap<String, AttributeValue>,
    ty: EventType,
}

/// Ingests objects into the events table.
#[derive(Debug, Clone)]
pub struct Ingester {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) store: EventStore,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    sqs: Option<aws_sdk_sqs::Client>,
}

/// What a run checkpoints: the whole file's manifest, or one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The file, read through by one run at a time.
    File,
    /// Chunk `index` of a planned file.
    Chunk(u64),
}

/// Where a run starts and stops, and what it has counted so far.
pub(crate) struct Span {
    pub(crate) start: Start,
    pub(crate) progress: Progress,
    /// Lines to skip without writing (a compressed file re-read from its start).
    pub(crate) skip_through: u64,
    /// The byte to stop before (a chunk's end).
    pub(crate) end: Option<u64>,
    /// The header, when known.
    pub(crate) header: Option<Vec<String>>,
}

impl Span {
    /// The rest of a file, from its manifest's checkpoint.
    fn of_file(manifest: &Manifest) -> Self {
        let (start, progress) = match &manifest.header {
            Some(header) if manifest.checkpoint_byte > 0 => (
                Start::Resume {
                    header: header.clone(),
                    byte: manifest.checkpoint_byte,
                    next_line: manifest.checkpoint_line + 1,
                },
                Progress::of(manifest),
            ),
            // Nothing checkpointed yet: start over; events already written are counted as present.
            _ if manifest.checkpoint_line == 0 => (
                Start::Beginning,
                Progress {
                    written: manifest.written,
                    already_present: manifest.already_present,
                    ..Progress::default()
                },
            ),
            // Checkpointed without a byte to resume at (a compressed object):
            // it is read from the start again, and the lines up to the
            // checkpoint, counted there, are skipped without a request.
            _ => (Start::Beginning, Progress::of(manifest)),
        };
        let skip_through = match start {
            Start::Beginning => progress.line,
            Start::Resume { .. } => 0,
        };
        Span {
            start,
            progress,
            skip_through,
            end: None,
            header: manifest.header.clone(),
        }
    }
}

/// What a planning run did (`chunked`).
pub(crate) enum Planned {
    /// The plan is stored (maybe in part, until a continuation) and its tasks sent.
    Report(Report),
    /// The object is compressed: no ranged reads, so it is read through serially.
    Serial,
}

/// How a run that was not stopped ended.
pub(crate) enum Ended {
    /// Every line of the span is written.
    Read(Progress),
    /// The file cannot be ingested: why.
    Refused(String, Progress),
}

enum Msg {
    Header(Vec<String>),
    Line(Built),
    Failed(ReadError),
    /// The reader read the whole input: without it, a closed channel means
    /// the reader died, and the file is not complete.
    End,
}

pub(crate) fn now_str() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Ingester {
    /// An ingester on real clients.
    pub fn new(s3: aws_sdk_s3::Client, dynamodb: aws_sdk_dynamodb::Client, registry: Registry, config: Config) -> Self {
        let store = EventStore::new(dynamodb, config.events_table.clone());
        Ingester {
            s3,
            store,
            registry,
            config,
            sqs: None,
        }
    }

    /// Send continuations with `sqs` to the configured queue
    /// ([`Config::queue_url`]); without, a stopped run fails its message.
    pub fn with_continuations(mut self, sqs: aws_sdk_sqs::Client) -> Self {
        self.sqs = Some(sqs);
        self
    }

    /// The client and queue continuations go to, when both are configured.
    pub fn continuations(&self) -> Option<(&aws_sdk_sqs::Client, &str)> {
        Some((self.sqs.as_ref()?, self.config.queue_url.as_deref()?))
    }

    /// The events table.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub(crate) fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease.as_millis() as i64
    }

    /// Ingest one object. `deadline` is when the caller must return (the Lambda deadline).
    #[tracing::instrument(skip_all, fields(bucket = %obj.bucket, key = %obj.key))]
    pub async fn ingest_object(&self, obj: &ObjectRef, deadline: Option<Instant>) -> Result<Report, IngestError> {
        let head = match object::head(&self.s3, obj).await? {
            Ok(h) => h,
            Err(Gone) => return self.gone(obj).await,
        };
        let file_id = match head.file_id {
            Some(id) => id,
            None => match object::hash(&self.s3, obj).await? {
                Ok(id) => id,
                Err(Gone) => return self.gone(obj).await,
            },
        };
        let dataset = self.registry.route(self.config.dataset_key(&obj.key)).clone();
        let now = now_str();
        let mut fresh = Manifest::new(
            &file_id,
            &dataset.name,
            dataset.version,
            &obj.bucket,
            &obj.key,
            head.size,
            &now,
        );
        fresh.lease_until = self.lease_until();
        fresh.attempts = 1;
        let manifest = match self.store.create_manifest(&fresh).await? {
            Created::New => fresh,
            Created::Exists(old) if old.status.is_final() => {
                self.store.add_key(&file_id, &obj.key, &now).await?;
                self.store
                    .put_upload(&Upload::new(
                        &obj.bucket,
                        &obj.key,
                        &file_id,
                        UploadOutcome::Duplicate,
                        &now,
                    ))
                    .await?;
                tracing::info!(%file_id, status = old.status.as_str(), "content already ingested: nothing to write");
                return Ok(Report {
                    bucket: obj.bucket.clone(),
                    key: obj.key.clone(),
                    file_id,
                    outcome: UploadOutcome::Duplicate,
                    status: old.status,
                    reason: old.reason.clone(),
                    progress: Progress::of(&old),
                });
            }
            Created::Exists(old) => {
                match self
                    .store
                    .acquire(&file_id, &obj.key, now_ms(), self.lease_until(), &now)
                    .await?
                {
                    Some(m) => m,
                    None => {
                        return Err(IngestError::Leased {
                            file_id,
                            lease_until_ms: old.lease_until,
                        })
                    }
                }
            }
        };
        let dataset = self.registry.get(&manifest.dataset).cloned().unwrap_or(dataset);
        // Before the lines: `status` finds the file (and its checkpoint)
        // while it is being ingested, not only once it is final.
        self.store
            .put_upload(&Upload::new(
                &obj.bucket,
                &obj.key,
                &file_id,
                UploadOutcome::New,
                &now_str(),
            ))
            .await?;
        let report = if self.plans(obj, &manifest) {
            match self.plan(obj, &dataset, &manifest, deadline).await? {
                Planned::Report(r) => r,
                Planned::Serial => self.run(obj, &dataset, &manifest, deadline).await?,
            }
        } else {
            self.run(obj, &dataset, &manifest, deadline).await?
        };
        Ok(report)
    }

    /// The object vanished before it could be read: a failed manifest under an
    /// id made from the notification, so the message is not a poison pill.
    async fn gone(&self, obj: &ObjectRef) -> Result<Report, IngestError> {
        let mut h = Sha256::new();
        for part in [
            &obj.bucket,
            &obj.key,
            obj.version_id.as_deref().unwrap_or(""),
            obj.sequencer.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let file_id = format!("gone-{}", hex::encode(&h.finalize()[..16]));
        let now = now_str();
        let dataset = self.registry.route(self.config.dataset_key(&obj.key));
        let reason = "object no longer exists: the notified version was deleted (or, without versioning, the key replaced) before it could be read".to_owned();
        let mut m = Manifest::new(&file_id, &dataset.name, dataset.version, &obj.bucket, &obj.key, 0, &now);
        m.status = FileStatus::Failed;
        m.reason = Some(reason.clone());
        m.completed_at = Some(now.clone());
        self.store.put_failed_manifest(&m).await?;
        self.store
            .put_upload(&Upload::new(
                &obj.bucket,
                &obj.key,
                &file_id,
                UploadOutcome::Failed,
                &now,
            ))
            .await?;
        tracing::warn!(%file_id, "{reason}");
        Ok(Report {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            file_id,
            outcome: UploadOutcome::Failed,
            status: FileStatus::Failed,
            reason: Some(reason),
            progress: Progress::default(),
        })
    }

    /// Read the file through from its checkpoint, then give the manifest its
    /// final status.
    async fn run(
        &self,
        obj: &ObjectRef,
        dataset: &Dataset,
        manifest: &Manifest,
        deadline: Option<Instant>,
    ) -> Result<Report, IngestError> {
        let file_id = manifest.file_id.clone();
        let span = Span::of_file(manifest);
        if let Start::Resume { byte, next_line, .. } = &span.start {
            tracing::info!(%file_id, byte, line = next_line, "resuming from the checkpoint");
        }
        let report = |status, reason: Option<String>, progress| Report {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            file_id: file_id.clone(),
            outcome: UploadOutcome::New,
            status,
            reason,
            progress,
        };
        match self.stream(obj, dataset, &file_id, span, Part::File, deadline).await? {
            Ended::Refused(reason, progress) => {
                self.store
                    .finish(&file_id, FileStatus::Failed, Some(&reason), &progress, &now_str())
                    .await?;
                Ok(report(FileStatus::Failed, Some(reason), progress))
            }
            Ended::Read(progress) => {
                self.store
                    .finish(&file_id, FileStatus::Complete, None, &progress, &now_str())
                    .await?;
                tracing::info!(%file_id, rows = progress.rows, accepted = progress.accepted, rejected = progress.rejected,
                    already_present = progress.already_present, "file complete");
                Ok(report(FileStatus::Complete, None, progress))
            }
        }
    }

    /// Stream the lines of `span` and write their events, checkpointing
    /// `part` as it goes. A stop (deadline, a failed write or read) saves the
    /// checkpoint, releases the lease and returns the error.
    pub(crate) async fn stream(
        &self,
        obj: &ObjectRef,
        dataset: &Dataset,
        file_id: &str,
        span: Span,
        part: Part,
        deadline: Option<Instant>,
    ) -> Result<Ended, IngestError> {
        let Span {
            start,
            mut progress,
            skip_through,
            end,
            header,
        } = span;
        let from = match &start {
            Start::Resume { byte, .. } => *byte,
            Start::Beginning => 0,
        };
        let body = if end.is_some_and(|e| from >= e) {
            // A chunk checkpointed at its very end: nothing left to read.
            aws_sdk_s3::primitives::ByteStream::from_static(b"")
        } else {
            match object::get(&self.s3, obj, from, end).await? {
                Ok(o) => o.body,
                Err(Gone) => {
                    let reason = "object no longer exists: the notified version was deleted (or, without versioning, the key replaced) while being read".to_owned();
                    return Ok(Ended::Refused(reason, progress));
                }
            }
        };

        // Parse on a blocking thread, fed from the body; lines come back over a bounded channel.
        let (tx, mut rx) = mpsc::channel::<Msg>(1024);
        let limits = self.config.limits;
        let ds = dataset.clone();
        let id = file_id.to_owned();
        let reader = tokio::task::spawn_blocking(move || {
            let input = SyncIoBridge::new(body.into_async_read());
            // A ranged read resumes a plain file mid-way: its bytes there are
            // a record's, not a magic number or a byte-order mark.
            let detected = match start {
                Start::Resume { .. } => Ok((Compression::None, Box::new(input) as Box<dyn std::io::Read + Send>)),
                Start::Beginning => decode::text(input),
            };
            let (compression, text) = match detected {
                Ok(t) => t,
                Err(e) => return tx.blocking_send(Msg::Failed(e.into())).ok(),
            };
            // Past the first bytes, a compressed stream that stops decoding
            // is the file's fault (failed), a read that fails is S3's (retried).
            let failed = |e: ReadError| match e {
                ReadError::Io(io) => ReadError::from(decode::classify(compression, io)),
                other => other,
            };
            // A compressed object has no byte offset a ranged read could
            // resume at: its checkpoints keep byte 0, so a continuation reads
            // it from the start again and skips the lines already counted.
            let resumable = compression == Compression::None;
            let mut lines = match LineReader::new(text, start, &ds, limits) {
                Ok(r) => r,
                Err(e) => return tx.blocking_send(Msg::Failed(failed(e))).ok(),
            };
            tx.blocking_send(Msg::Header(lines.header().to_vec())).ok()?;
            loop {
                match lines.next_line() {
                    Ok(Some(l)) if l.number <= skip_through => continue,
                    Ok(Some(l)) => {
                        let (number, end) = (l.number, if resumable { l.end_byte } else { 0 });
                        let (item, ty) = line_item(&id, &ds, l);
                        tx.blocking_send(Msg::Line(Built { number, end, item, ty })).ok()?
                    }
                    Ok(None) => return tx.blocking_send(Msg::End).ok(),
                    Err(e) => return tx.blocking_send(Msg::Failed(failed(e))).ok(),
                }
            }
        });

        let mut header = header.unwrap_or_default();
        // Shared with every line's write task, so a line costs no copy of it.
        let shared_id: std::sync::Arc<str> = file_id.into();
        let mut inflight = FuturesOrdered::new();
        let mut since_checkpoint = 0u64;
        let mut input_done = false;
        let mut stop: Option<IngestError> = None;
        let near_deadline = |d: Option<Instant>| d.is_some_and(|d| Instant::now() + self.config.deadline_margin >= d);
        loop {
            // Keep the window full while there is input.
            while !input_done && stop.is_none() && inflight.len() < self.config.concurrency {
                if near_deadline(deadline) {
                    stop = Some(IngestError::Deadline {
                        bucket: obj.bucket.clone(),
                        key: obj.key.clone(),
                        line: 0,
                    });
                    break;
                }
                match rx.recv().await {
                    Some(Msg::End) => input_done = true,
                    None => {
                        stop = Some(IngestError::Reader(
                            "the reader stopped before the end of the input".into(),
                        ));
                    }
                    Some(Msg::Header(h)) => header = h,
                    Some(Msg::Failed(e @ (ReadError::Header(_) | ReadError::Decode(_)))) => {
                        drop(rx);
                        let reason = e.to_string();
                        tracing::warn!(%file_id, %reason, "file refused");
                        return Ok(Ended::Refused(reason, progress));
                    }
                    Some(Msg::Failed(ReadError::Io(e))) => {
                        stop = Some(IngestError::S3 {
                            bucket: obj.bucket.clone(),
                            key: obj.key.clone(),
                            operation: "GetObject",
                            message: format!("reading the body: {e}"),
                        });
                    }
                    Some(Msg::Line(Built { number, end, item, ty })) => {
                        let store = self.store.clone();
                        let id = shared_id.clone();
                        let put = tokio::spawn(async move { store.put_event(&id, item).await });
                        inflight.push_back(async move { (number, end, ty, put.await) });
                    }
                }
            }
            let Some((number, end, ty, res)) = inflight.next().await else {
                break;
            };
            let written = match res {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => {
                    stop.get_or_insert(e);
                    break;
                }
                Err(join) => {
                    stop.get_or_insert(IngestError::Reader(format!("write task: {join}")));
                    break;
                }
            };
            progress.rows += 1;
            match ty {
                EventType::Accepted => progress.accepted += 1,
                EventType::Rejected => progress.rejected += 1,
            }
            if written {
                progress.written += 1;
            } else {
                progress.already_present += 1;
            }
            progress.line = number;
            progress.byte = end;
            since_checkpoint += 1;
            if since_checkpoint >= self.config.checkpoint_every {
                since_checkpoint = 0;
                self.save(part, file_id, &progress, &header, self.lease_until()).await?;
            }
        }
        drop(rx);
        // A reader blocked on a full channel returns once the receiver is gone.
        let _ = reader.await;

        if let Some(mut err) = stop {
            // Keep what is known written, and release the lease so a retry can start at once.
            self.save(part, file_id, &progress, &header, 0).await?;
            if let IngestError::Deadline { line, .. } = &mut err {
                *line = progress.line;
            }
            tracing::warn!(%file_id, ?part, line = progress.line, error = %err, "stopped; the retry resumes at the checkpoint");
            return Err(err);
        }
        Ok(Ended::Read(progress))
    }

    /// Checkpoint the file's manifest or the chunk's item.
    async fn save(
        &self,
        part: Part,
        file_id: &str,
        p: &Progress,
        header: &[String],
        lease: i64,
    ) -> Result<(), IngestError> {
        match part {
            Part::File => self.store.checkpoint(file_id, p, header, lease, &now_str()).await,
            Part::Chunk(index) => self.store.checkpoint_chunk(file_id, index, p, lease, &now_str()).await,
        }
    }
}
