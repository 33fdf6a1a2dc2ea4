//! The embedded local stack: AWS emulators in-process on 127.0.0.1, spoken to
//! over HTTP by the real AWS SDK clients.
//!
//! * DynamoDB and DynamoDB Streams: `dynoxide-rs` (SQLite; a file under the
//!   state directory, or memory).
//! * S3: `s3s-fs` (objects as files under the state directory), behind the
//!   `s3s` protocol layer, served with hyper. Chosen over `awsim-s3` because it
//!   is a plain hyper service with ranged GETs and SHA-256 checksums, embeds in
//!   a few lines and keeps objects as plain files; `awsim` embeds only through
//!   its whole gateway. See docs/local-stack.md.
//! * SQS: our own ([`crate::sqs`]), queues in SQLite (a file under the state
//!   directory, or memory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clients::{Clients, Endpoints};
use crate::identity::{ACCESS_KEY, SECRET_KEY};
use crate::notify::{Notifier, NotifyingS3};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

/// Where the stack keeps its state.
#[derive(Debug, Clone)]
pub enum State {
    /// Nothing survives the process (tests).
    Memory,
    /// DynamoDB in `dir/dynamodb.sqlite`, S3 objects under `dir/s3/`, SQS in
    /// `dir/sqs.sqlite`.
    Dir(PathBuf),
}

/// Fixed ports (for `pipeline up`) or any free ones (0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    /// DynamoDB and Streams.
    pub dynamodb: u16,
    /// S3.
    pub s3: u16,
    /// SQS.
    pub sqs: u16,
    /// SNS.
    pub sns: u16,
}

/// A running local stack. Dropping it stops the servers.
pub struct LocalStack {
    /// `http://127.0.0.1:PORT` of DynamoDB and DynamoDB Streams.
    pub dynamodb_endpoint: String,
    /// `http://127.0.0.1:PORT` of S3.
    pub s3_endpoint: String,
    /// `http://127.0.0.1:PORT` of SQS.
    pub sqs_endpoint: String,
    /// `http://127.0.0.1:PORT` of SNS.
    pub sns_endpoint: String,
    /// S3 object-created notifications (see [`crate::notify`]).
    pub notifier: Arc<Notifier>,
    sqs: Arc<crate::sqs::Sqs>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _tmp: Option<PathBuf>,
}

impl LocalStack {
    /// Start the emulators.
    pub async fn start(state: State, ports: Ports) -> Result<Self> {
        let (shutdown, rx) = watch::channel(false);
        let (db, s3_root, tmp) = match &state {
            State::Memory => {
                let db = dynoxide::Database::memory().map_err(|e| anyhow::anyhow!("dynoxide: {e}"))?;
                let root = std::env::temp_dir().join(format!("pipeline-s3-{}", uuid_like()));
                (db, root.clone(), Some(root))
            }
            State::Dir(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join("dynamodb.sqlite");
                let db = dynoxide::Database::new(path.to_str().context("state path is not UTF-8")?)
                    .map_err(|e| anyhow::anyhow!("dynoxide on {}: {e}", path.display()))?;
                // No fsync per write: a development store that a process crash cannot lose
                // (SQLite hands every write to the OS), five times faster on this disk.
                db.enable_bulk_loading()
                    .map_err(|e| anyhow::anyhow!("dynoxide pragmas: {e}"))?;
                index_stream_records(&path)?;
                (db, dir.join("s3"), None)
            }
        };
        std::fs::create_dir_all(&s3_root).with_context(|| format!("creating {}", s3_root.display()))?;

        let ddb_listener = bind(ports.dynamodb).await?;
        let ddb_addr = ddb_listener.local_addr()?;
        let mut ddb_rx = rx.clone();
        let ddb = tokio::spawn(async move {
            let stop = async move {
                let _ = ddb_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = dynoxide::server::serve_with_shutdown(ddb_listener, db, stop).await {
                tracing::error!("dynamodb emulator stopped: {e}");
            }
        });

        let s3_listener = bind(ports.s3).await?;
        let s3_addr = s3_listener.local_addr()?;
        let sqs_listener = bind(ports.sqs).await?;
        let sqs_addr = sqs_listener.local_addr()?;

        let sqs_path = match &state {
            State::Dir(dir) => Some(dir.join("sqs.sqlite")),
            State::Memory => None,
        };
        let sqs_service = crate::sqs::Sqs::open(sqs_path.as_deref(), &endpoint(sqs_addr), rx.clone())
            .map_err(|e| anyhow::anyhow!("opening the SQS store: {e}"))?;
        let sqs = tokio::spawn(crate::sqs::serve(sqs_listener, sqs_service.clone(), rx.clone()));
        let sns_listener = bind(ports.sns).await?;
        let sns_addr = sns_listener.local_addr()?;
        let sns_path = match &state {
            State::Dir(dir) => Some(dir.join("sns.json")),
            State::Memory => None,
        };
        let sns_service = crate::sns::Sns::open(sns_path.as_deref(), sqs_service.clone(), &endpoint(sns_addr))
            .map_err(|e| anyhow::anyhow!("opening the SNS topics: {e}"))?;
        let sns = tokio::spawn(crate::sns::serve(sns_listener, sns_service, rx.clone()));

        let notifier = Arc::new(Notifier::default());
        let s3 = tokio::spawn(serve_s3(s3_listener, s3_root, notifier.clone(), rx));
        let tasks = vec![ddb, s3, sqs, sns];

        let stack = LocalStack {
            dynamodb_endpoint: endpoint(ddb_addr),
            s3_endpoint: endpoint(s3_addr),
            sqs_endpoint: endpoint(sqs_addr),
            sns_endpoint: endpoint(sns_addr),
            notifier,
            sqs: sqs_service,
            shutdown,
            tasks,
            _tmp: tmp,
        };
        let clients = stack.clients();
        stack.notifier.set_clients(clients.s3, clients.sqs);
        Ok(stack)
    }

    /// Send object-created notifications of `rule.bucket` to `rule.queue_url`.
    pub fn notify(&self, rule: crate::notify::Rule) {
        self.notifier.add(rule);
    }

    /// The SQS emulator (for what only the local stack can do, such as
    /// handing back the messages a stopped process held).
    pub fn sqs(&self) -> &crate::sqs::Sqs {
        &self.sqs
    }

    /// SDK configuration with the stack's credentials and region (no endpoint).
    pub fn sdk_config(&self) -> SdkConfig {
        crate::identity::sdk_config()
    }

    /// Where each emulator listens.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            s3: Some(self.s3_endpoint.clone()),
            dynamodb: Some(self.dynamodb_endpoint.clone()),
            sqs: Some(self.sqs_endpoint.clone()),
            sns: Some(self.sns_endpoint.clone()),
        }
    }

    /// Clients on the emulators.
    pub fn clients(&self) -> Clients {
        self.clients_with(&[])
    }

    /// Clients on the emulators, each with `interceptors` (counters, faults).
    pub fn clients_with(&self, interceptors: &[SharedInterceptor]) -> Clients {
        Clients::build(&self.sdk_config(), &self.endpoints(), interceptors)
    }

    /// Stop the servers and wait for them.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(tmp) = &self._tmp {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }
}

/// dynoxide finds the next stream sequence number (on every write) and reads
/// shards with `CAST(sequence_number AS INTEGER)` over an unindexed table: a
/// full scan per request, so writes slowed to 60 a second at 40,000 items.
/// Expression indexes matching those queries make both logarithmic. Only the
/// file-backed store can be reached; the in-memory one (tests) stays small.
fn index_stream_records(path: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS pipeline_stream_seq
             ON _stream_records (table_name, CAST(sequence_number AS INTEGER));
         CREATE INDEX IF NOT EXISTS pipeline_stream_shard_seq
             ON _stream_records (table_name, shard_id, CAST(sequence_number AS INTEGER));",
    )
    .with_context(|| format!("indexing the stream records of {}", path.display()))?;
    Ok(())
}

async fn bind(port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (is another local stack running?)"))
}

fn endpoint(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

async fn serve_s3(listener: TcpListener, root: PathBuf, notifier: Arc<Notifier>, mut stop: watch::Receiver<bool>) {
    let service = match s3_service(&root) {
        Ok(inner) => NotifyingS3 { inner, notifier },
        Err(e) => {
            tracing::error!("s3 emulator: {e:#}");
            return;
        }
    };
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    graceful.shutdown().await;
}

fn s3_service(root: &Path) -> Result<s3s::service::S3Service> {
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs on {}: {e:?}", root.display()))?;
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes name columns of dynoxide's private `_stream_records`
    /// table; dynoxide-rs is pinned to the version they were written for.
    /// This fails loudly if a new version changes that table.
    #[test]
    fn dynoxides_stream_table_has_the_indexed_columns() {
        let dir = std::env::temp_dir().join(format!("localstack-shape-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dynamodb.sqlite");
        let db = dynoxide::Database::new(path.to_str().unwrap()).unwrap();
        drop(db);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info('_stream_records')")
            .unwrap();
        let columns: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for c in ["table_name", "shard_id", "sequence_number"] {
            assert!(
                columns.iter().any(|x| x == c),
                "dynoxide's _stream_records has no {c} column ({columns:?}): re-check index_stream_records"
            );
        }
        index_stream_records(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
