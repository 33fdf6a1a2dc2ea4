//! Big files in chunks: a planner cuts the object at record boundaries
//! ([`crate::scan`]), stores each chunk (range, first line) beside the
//! manifest, and sends one task per chunk to the ingest queue; the chunks
//! then run side by side, each a ranged read written with the same
//! conditional puts a serial run makes, so every event has the key it would
//! have had. A chunk counts itself into the manifest once (a condition on
//! the set of done chunks), and the file completes once (a condition on
//! that set being the whole plan).
//!
//! Every step can run twice: a plan is the same each time (the scan is
//! deterministic and resumes from the boundary it last stored), stored
//! chunks are not overwritten, chunk tasks are idempotent, and a task sent
//! twice finds its chunk leased (continued later) or done (nothing to do).

use std::io::Read;
use std::time::Instant;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use schema::items::{Chunk, ChunkStatus, FileStatus, Manifest, UploadOutcome};
use schema::Dataset;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::decode::{self, Compression};
use crate::error::IngestError;
use crate::ingest::{now_ms, now_str, Ended, Ingester, Part, Planned, Report, Span};
use crate::notification::{ChunkTask, ObjectRef};
use crate::object::{self, Gone};
use crate::reader::{LineReader, ReadError, Start};
use crate::scan::{Boundary, Scanner};
use crate::store::Progress;

/// Bytes the planner reads at a time.
const BLOCK: usize = 1 << 20;
/// Chunk tasks per `SendMessageBatch` (SQS's most).
const TASKS_PER_BATCH: usize = 10;

enum ScanMsg {
    Compressed,
    Header(Vec<String>),
    Bounds(Vec<Boundary>),
    Failed(ReadError),
    /// The end of the object: the number of lines, or why the scan stopped
    /// offering boundaries (the rest is one chunk).
    End(Result<u64, crate::scan::Stop>),
}

/// Fill `buf` from `r` as far as it goes; the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn report(obj: &ObjectRef, file_id: &str, status: FileStatus, reason: Option<String>, progress: Progress) -> Report {
    Report {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        file_id: file_id.to_owned(),
        outcome: UploadOutcome::New,
        status,
        reason,
        progress,
    }
}

/// Where a plan goes on from: the first chunk whose task is not sent yet,
/// or, when all were, the chunk in progress at `cur`.
fn resume_at(ready: &[Chunk], cur: Boundary) -> (u64, u64) {
    ready
        .first()
        .map_or((cur.byte, cur.line), |c| (c.start_byte, c.first_line))
}

impl Ingester {
    /// Whether this run should plan the file rather than read it through:
    /// chunks need the queue their tasks go to; a compressed object (by its
    /// name here, by its bytes in [`Self::plan`]) cannot be range-read.
    pub(crate) fn plans(&self, obj: &ObjectRef, manifest: &Manifest) -> bool {
        if manifest.chunked {
            return true;
        }
        self.continuations().is_some()
            && manifest.size > self.config.chunk_above
            && manifest.checkpoint_line == 0
            && !(obj.key.ends_with(".gz") || obj.key.ends_with(".zst"))
    }

    /// Plan the file (or go on planning it), sending each chunk's task as soon
    /// as the chunk is stored. The caller holds the manifest's lease.
    pub(crate) async fn plan(
        &self,
        obj: &ObjectRef,
        dataset: &Dataset,
        manifest: &Manifest,
        deadline: Option<Instant>,
    ) -> Result<Planned, IngestError> {
        let file_id = manifest.file_id.as_str();
        if manifest.chunks_total.is_some() {
            return self.redrive(obj, manifest).await.map(Planned::Report);
        }
        if manifest.chunked && manifest.plan_byte >= manifest.size {
            // Every chunk was sent, and the run that sent the last failed to
            // record the total: record it now rather than plan the end again.
            self.store
                .plan_progress(
                    file_id,
                    manifest.plan_byte,
                    manifest.plan_line,
                    manifest.chunks_planned,
                    Some(manifest.chunks_planned),
                    0,
                    &now_str(),
                )
                .await?;
            let mut m = manifest.clone();
            m.chunks_total = Some(m.chunks_planned);
            return self.redrive(obj, &m).await.map(Planned::Report);
        }
        let from = if manifest.chunked { manifest.plan_byte } else { 0 };
        // Line 1 until a plan progress is stored (the header counts for none).
        let line = if manifest.chunked { manifest.plan_line.max(1) } else { 1 };
        let body = match object::get(&self.s3, obj, from, None).await? {
            Ok(o) => o.body,
            Err(Gone) => {
                let reason = "object no longer exists: the notified version was deleted (or, without versioning, the key replaced) while being planned".to_owned();
                self.store.fail_file(file_id, &reason, &now_str()).await?;
                return Ok(Planned::Report(report(
                    obj,
                    file_id,
                    FileStatus::Failed,
                    Some(reason),
                    Progress::default(),
                )));
            }
        };
        let (tx, mut rx) = mpsc::channel::<ScanMsg>(64);
        let (every, limits, ds) = (self.config.chunk_bytes, self.config.limits, dataset.clone());
        let max_record = limits.max_line_bytes as u64;
        let scan = tokio::task::spawn_blocking(move || {
            let input = SyncIoBridge::new(body.into_async_read());
            let mut buf = vec![0u8; BLOCK];
            let (mut scanner, mut text): (Scanner, Box<dyn Read + Send>) = if from == 0 {
                let (compression, mut text) = match decode::text(input) {
                    Ok(t) => t,
                    Err(e) => return tx.blocking_send(ScanMsg::Failed(e.into())).ok(),
                };
                if compression != Compression::None {
                    return tx.blocking_send(ScanMsg::Compressed).ok();
                }
                // The header, checked against the dataset as a serial run checks it.
                let n = match fill(&mut text, &mut buf) {
                    Ok(n) => n,
                    Err(e) => return tx.blocking_send(ScanMsg::Failed(e.into())).ok(),
                };
                match LineReader::new(&buf[..n], Start::Beginning, &ds, limits) {
                    Ok(r) => tx.blocking_send(ScanMsg::Header(r.header().to_vec())).ok()?,
                    Err(e) => return tx.blocking_send(ScanMsg::Failed(e)).ok(),
                }
                let mut scanner = Scanner::new(every, max_record);
                let mut out = Vec::new();
                scanner.feed(&buf[..n], &mut out);
                if !out.is_empty() {
                    tx.blocking_send(ScanMsg::Bounds(out)).ok()?;
                }
                (scanner, text)
            } else {
                let at = Boundary { byte: from, line };
                (Scanner::resume(at, every, max_record), Box::new(input))
            };
            loop {
                let n = match fill(&mut text, &mut buf) {
                    Ok(n) => n,
                    Err(e) => return tx.blocking_send(ScanMsg::Failed(e.into())).ok(),
                };
                if n == 0 || scanner.stopped().is_some() {
                    return tx.blocking_send(ScanMsg::End(scanner.finish())).ok();
                }
                let mut out = Vec::new();
                scanner.feed(&buf[..n], &mut out);
                if !out.is_empty() {
                    tx.blocking_send(ScanMsg::Bounds(out)).ok()?;
                }
            }
        });

        // The chunk that starts at `cur` ends at the next boundary found.
        let mut cur = Boundary { byte: from, line };
        let mut planned = if manifest.chunked { manifest.chunks_planned } else { 0 };
        let mut ready: Vec<Chunk> = Vec::new();
        let near = |d: Option<Instant>| d.is_some_and(|d| Instant::now() + self.config.deadline_margin >= d);
        let outcome: Result<Planned, IngestError> = async {
            loop {
                let Some(msg) = rx.recv().await else {
                    break Err(IngestError::Reader("the planner's scan stopped before the end of the object".into()));
                };
                match msg {
                    ScanMsg::Compressed => break Ok(Planned::Serial),
                    ScanMsg::Header(h) => self.store.start_plan(file_id, &h, self.lease_until(), &now_str()).await?,
                    ScanMsg::Failed(e @ (ReadError::Header(_) | ReadError::Decode(_))) => {
                        let reason = e.to_string();
                        tracing::warn!(%file_id, %reason, "file refused");
                        self.store.fail_file(file_id, &reason, &now_str()).await?;
                        break Ok(Planned::Report(report(obj, file_id, FileStatus::Failed, Some(reason), Progress::default())));
                    }
                    ScanMsg::Failed(ReadError::Io(e)) => {
                        break Err(IngestError::S3 {
                            bucket: obj.bucket.clone(),
                            key: obj.key.clone(),
                            operation: "GetObject",
                            message: format!("planning: reading the body: {e}"),
                        })
                    }
                    ScanMsg::Bounds(bounds) => {
                        let now = now_str();
                        for b in bounds {
                            let index = planned + ready.len() as u64;
                            ready.push(Chunk::planned(file_id, index, cur.byte, b.byte, cur.line, Some(b.line - cur.line), &now));
                            cur = b;
                        }
                        while ready.len() >= TASKS_PER_BATCH {
                            self.dispatch(obj, file_id, &mut ready, TASKS_PER_BATCH, &mut planned).await?;
                            let (byte, line) = resume_at(&ready, cur);
                            self.store
                                .plan_progress(file_id, byte, line, planned, None, self.lease_until(), &now_str())
                                .await?;
                        }
                        if near(deadline) {
                            let n = ready.len();
                            self.dispatch(obj, file_id, &mut ready, n, &mut planned).await?;
                            self.store
                                .plan_progress(file_id, cur.byte, cur.line, planned, None, 0, &now_str())
                                .await?;
                            break Err(IngestError::Deadline {
                                bucket: obj.bucket.clone(),
                                key: obj.key.clone(),
                                line: cur.line,
                            });
                        }
                    }
                    ScanMsg::End(end) => {
                        let lines = match &end {
                            Ok(total) => Some(total + 1 - cur.line),
                            Err(stop) => {
                                tracing::info!(%file_id, line = stop.line, reason = stop.reason, "the rest of the file is one chunk");
                                None
                            }
                        };
                        let index = planned + ready.len() as u64;
                        ready.push(Chunk::planned(file_id, index, cur.byte, manifest.size, cur.line, lines, &now_str()));
                        while !ready.is_empty() {
                            let n = ready.len().min(TASKS_PER_BATCH);
                            self.dispatch(obj, file_id, &mut ready, n, &mut planned).await?;
                        }
                        // Every chunk is sent: a failure from here on must
                        // not plan the last one again (see the top of `plan`).
                        cur = Boundary {
                            byte: manifest.size,
                            line: cur.line,
                        };
                        self.store
                            .plan_progress(file_id, cur.byte, cur.line, planned, Some(planned), 0, &now_str())
                            .await?;
                        tracing::info!(%file_id, chunks = planned, "planned");
                        // The chunks may all be done already.
                        let status = if self.store.complete_chunked(file_id, &now_str()).await? {
                            FileStatus::Complete
                        } else {
                            FileStatus::Ingesting
                        };
                        break Ok(Planned::Report(report(obj, file_id, status, None, Progress::default())));
                    }
                }
            }
        }
        .await;
        drop(rx);
        let _ = scan.await;
        if outcome.is_err() && !matches!(outcome, Err(IngestError::Deadline { .. })) {
            // Release the lease, so the retry plans on from the first chunk
            // whose task was not sent.
            let (byte, line) = resume_at(&ready, cur);
            let _ = self
                .store
                .plan_progress(file_id, byte, line, planned, None, 0, &now_str())
                .await;
        }
        outcome
    }

    /// Store the first `n` chunks of `ready` and send their tasks; only then
    /// are they taken off `ready` and counted as planned, so a failure leaves
    /// the plan to go on from the first of them.
    async fn dispatch(
        &self,
        obj: &ObjectRef,
        file_id: &str,
        ready: &mut Vec<Chunk>,
        n: usize,
        planned: &mut u64,
    ) -> Result<(), IngestError> {
        let batch = &ready[..n.min(ready.len())];
        if batch.is_empty() {
            return Ok(());
        }
        self.store.put_chunks(batch).await?;
        let indexes: Vec<u64> = batch.iter().map(|c| c.index).collect();
        self.send_tasks(obj, file_id, &indexes).await?;
        *planned += batch.len() as u64;
        ready.drain(..batch.len());
        Ok(())
    }

    /// Send the tasks of chunks `indexes` (at most ten), retrying entries SQS refused once.
    async fn send_tasks(&self, obj: &ObjectRef, file_id: &str, indexes: &[u64]) -> Result<(), IngestError> {
        let (sqs, url) = self
            .continuations()
            .ok_or_else(|| IngestError::Reader("chunk tasks need INGEST_QUEUE_URL".into()))?;
        let mut todo: Vec<u64> = indexes.to_vec();
        for attempt in 0..2 {
            let entries = todo
                .iter()
                .map(|&index| {
                    let task = ChunkTask {
                        bucket: obj.bucket.clone(),
                        key: obj.key.clone(),
                        version_id: obj.version_id.clone(),
                        file_id: file_id.to_owned(),
                        index,
                    };
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("c{index}"))
                        .message_body(task.body())
                        .build()
                        .map_err(|e| IngestError::Reader(format!("chunk task: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| IngestError::Sqs {
                    operation: "SendMessageBatch",
                    message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                })?;
            let failed: Vec<String> = out.failed.iter().map(|f| f.id.clone()).collect();
            if failed.is_empty() {
                return Ok(());
            }
            let why = out
                .failed
                .first()
                .map(|f| format!("{}: {}", f.code, f.message.as_deref().unwrap_or("")))
                .unwrap_or_default();
            todo.retain(|i| failed.contains(&format!("c{i}")));
            if attempt == 1 {
                return Err(IngestError::Sqs {
                    operation: "SendMessageBatch",
                    message: format!("{} chunk task(s) refused: {why}", todo.len()),
                });
            }
        }
        Ok(())
    }

    /// The plan is complete but the file is not: send the tasks of the chunks
    /// not yet done again (a re-upload, or a notification delivered twice,
    /// repairs a chunk whose task was lost or dead-lettered). A chunk still
    /// running finds its task leased and drops it later.
    async fn redrive(&self, obj: &ObjectRef, m: &Manifest) -> Result<Report, IngestError> {
        let total = m.chunks_total.unwrap_or(0);
        let missing: Vec<u64> = (0..total).filter(|i| !m.chunks_done.contains(i)).collect();
        for batch in missing.chunks(TASKS_PER_BATCH) {
            self.send_tasks(obj, &m.file_id, batch).await?;
        }
        self.store
            .plan_progress(
                &m.file_id,
                m.plan_byte,
                m.plan_line,
                m.chunks_planned,
                Some(total),
                0,
                &now_str(),
            )
            .await?;
        tracing::info!(file_id = %m.file_id, chunks = missing.len(), "chunks not done sent again");
        let status = if self.store.complete_chunked(&m.file_id, &now_str()).await? {
            FileStatus::Complete
        } else {
            FileStatus::Ingesting
        };
        Ok(report(obj, &m.file_id, status, None, Progress::of(m)))
    }

    /// Run one chunk task: take the chunk, write its lines, count it into the
    /// file once, and complete the file if it was the last.
    #[tracing::instrument(skip_all, fields(file_id = %task.file_id, chunk = task.index))]
    pub async fn ingest_chunk(&self, task: &ChunkTask, deadline: Option<Instant>) -> Result<Report, IngestError> {
        let obj = task.object();
        let file_id = task.file_id.as_str();
        let index = task.index;
        let manifest = self.store.manifest(file_id).await?.ok_or_else(|| IngestError::Dynamo {
            file_id: file_id.to_owned(),
            operation: "GetItem",
            message: format!("chunk {index}: the file has no manifest"),
        })?;
        if manifest.status.is_final() {
            return Ok(report(
                &obj,
                file_id,
                manifest.status,
                manifest.reason.clone(),
                Progress::of(&manifest),
            ));
        }
        if manifest.chunks_done.contains(&index) {
            // Counted, but its run may have stopped before marking the chunk.
            self.store.mark_chunk_done(file_id, index, &now_str()).await?;
            return self.close_chunk(&obj, file_id, index, None).await;
        }
        let chunk = match self
            .store
            .acquire_chunk(file_id, index, now_ms(), self.lease_until(), &now_str())
            .await?
        {
            Some(c) => c,
            None => match self.store.chunk(file_id, index).await? {
                Some(c) if c.status == ChunkStatus::Done => return self.close_chunk(&obj, file_id, index, None).await,
                Some(c) => {
                    return Err(IngestError::Leased {
                        file_id: format!("{file_id} (chunk {index})"),
                        lease_until_ms: c.lease_until,
                    })
                }
                None => {
                    return Err(IngestError::Dynamo {
                        file_id: file_id.to_owned(),
                        operation: "UpdateItem",
                        message: format!("chunk {index} is not in the plan"),
                    })
                }
            },
        };
        let dataset = self
            .registry
            .get(&manifest.dataset)
            .cloned()
            .unwrap_or_else(Dataset::untyped);
        let header = manifest.header.clone().unwrap_or_default();
        let progress = Progress::of_chunk(&chunk);
        let start = if chunk.checkpoint_line > 0 {
            Start::Resume {
                header: header.clone(),
                byte: chunk.checkpoint_byte,
                next_line: chunk.checkpoint_line + 1,
            }
        } else if chunk.start_byte == 0 {
            Start::Beginning
        } else {
            Start::Resume {
                header: header.clone(),
                byte: chunk.start_byte,
                next_line: chunk.first_line,
            }
        };
        let span = Span {
            start,
            progress,
            skip_through: 0,
            end: Some(chunk.end_byte),
            header: Some(header),
        };
        match self
            .stream(&obj, &dataset, file_id, span, Part::Chunk(index), deadline)
            .await?
        {
            Ended::Refused(reason, progress) => {
                self.store.fail_file(file_id, &reason, &now_str()).await?;
                Ok(report(&obj, file_id, FileStatus::Failed, Some(reason), progress))
            }
            Ended::Read(progress) => {
                if let Some(lines) = chunk.lines {
                    if progress.rows != lines {
                        // The plan and the reader disagree: a defect, not the file's fault.
                        tracing::error!(%file_id, index, planned = lines, read = progress.rows, "a chunk read another number of lines than planned");
                    }
                }
                self.close_chunk(&obj, file_id, index, Some(progress)).await
            }
        }
    }

    /// Count a read chunk into its file (once), mark it done, and complete
    /// the file if every chunk is.
    async fn close_chunk(
        &self,
        obj: &ObjectRef,
        file_id: &str,
        index: u64,
        read: Option<Progress>,
    ) -> Result<Report, IngestError> {
        let now = now_str();
        if let Some(p) = &read {
            let counted = self.store.count_chunk(file_id, index, p, &now).await?;
            self.store.chunk_done(file_id, index, p, &now).await?;
            tracing::info!(%file_id, index, rows = p.rows, counted, "chunk done");
        }
        let status = if self.store.complete_chunked(file_id, &now).await? {
            tracing::info!(%file_id, "file complete: its last chunk is done");
            FileStatus::Complete
        } else {
            FileStatus::Ingesting
        };
        Ok(report(obj, file_id, status, None, read.unwrap_or_default()))
    }
}
