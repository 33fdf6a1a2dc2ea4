//! A Lambda Runtime API (2018-06-01) on 127.0.0.1, so that tests run the real
//! Lambda binaries (their `main`: configuration from the environment, the
//! `lambda_runtime` loop, the JSON they answer) as Lambda would, with nothing
//! but the process and its environment.
//!
//! The binary is started with `AWS_LAMBDA_RUNTIME_API` pointing here; it asks
//! for the next invocation (`GET .../invocation/next`, which waits until
//! [`RuntimeApi::invoke`] hands one over) and answers with
//! `POST .../invocation/{id}/response` or `.../error`. A runtime that fails
//! inside `lambda_runtime` reports on `POST .../init/error`; our binaries read
//! their configuration before starting it, so theirs exit instead
//! ([`Function::exit`]), as a Lambda whose init fails does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, Mutex};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST .../response`: the handler's result.
    Response(serde_json::Value),
    /// `POST .../error`: the handler failed (or the event did not deserialize).
    Error(serde_json::Value),
}

struct Invocation {
    id: String,
    payload: Vec<u8>,
    deadline_ms: u64,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<serde_json::Value>>,
    next_calls: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct AppState {
    next: Arc<Mutex<mpsc::Receiver<Invocation>>>,
    shared: Arc<Shared>,
    function_arn: String,
}

/// A running Runtime API. Dropping it stops the server.
pub struct RuntimeApi {
    addr: SocketAddr,
    invocations: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    served: u64,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serve on a free port of 127.0.0.1 for the function `function_arn`.
    pub async fn start(function_arn: &str) -> Result<Self> {
        let (tx, rx) = mpsc::channel(1);
        let shared = Arc::new(Shared::default());
        let state = AppState {
            next: Arc::new(Mutex::new(rx)),
            shared: shared.clone(),
            function_arn: function_arn.to_owned(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Runtime API")?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("runtime API stopped: {e}");
            }
        });
        Ok(RuntimeApi {
            addr,
            invocations: tx,
            shared,
            served: 0,
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Hand `payload` to the function as its next event, with `timeout` to
    /// its deadline, and wait (up to the deadline and a second) for its answer.
    pub async fn invoke(&mut self, payload: &serde_json::Value, timeout: Duration) -> Result<Outcome> {
        self.served += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", self.served);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().await.insert(id.clone(), tx);
        let invocation = Invocation {
            id: id.clone(),
            payload: serde_json::to_vec(payload)?,
            deadline_ms: now_ms + timeout.as_millis() as u64,
        };
        let wait = timeout + Duration::from_secs(1);
        let handed = tokio::time::timeout(wait, self.invocations.send(invocation)).await;
        if !matches!(handed, Ok(Ok(()))) {
            anyhow::bail!(
                "the function never asked for invocation {id}{}",
                self.init_failure().await
            );
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => anyhow::bail!(
                "no answer to invocation {id} within {wait:?}{}",
                self.init_failure().await
            ),
        }
    }

    /// How many times the function asked for its next invocation.
    pub fn next_calls(&self) -> u64 {
        self.shared.next_calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the function reported on `init/error`, if anything.
    pub async fn init_error(&self) -> Option<serde_json::Value> {
        self.shared.init_error.lock().await.clone()
    }

    async fn init_failure(&self) -> String {
        self.init_error()
            .await
            .map(|e| format!(" (init error: {e})"))
            .unwrap_or_default()
    }
}

async fn next(State(state): State<AppState>) -> Response {
    state
        .shared
        .next_calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let Some(inv) = state.next.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", inv.id.clone());
    set("lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", state.function_arn.clone());
    set(
        "lambda-runtime-trace-id",
        format!("Root=1-00000000-{:024x};Sampled=0", inv.deadline_ms),
    );
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, inv.payload).into_response()
}

async fn settle(state: &AppState, id: &str, outcome: Outcome) -> StatusCode {
    match state.shared.pending.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&state, &id, Outcome::Response(json(&body))).await
}

async fn error(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&state, &id, Outcome::Error(json(&body))).await
}

async fn init_error(State(state): State<AppState>, body: Bytes) -> StatusCode {
    *state.shared.init_error.lock().await = Some(json(&body));
    StatusCode::ACCEPTED
}

/// A Lambda binary running as a function: its process, with the environment
/// Lambda gives it plus `env`, polling a [`RuntimeApi`] of its own. Dropping it
/// kills the process.
pub struct Function {
    /// Its Runtime API.
    pub api: RuntimeApi,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Function {
    /// Start `binary` as the function `name`. The process environment is only
    /// what Lambda sets (reserved variables, credentials, region) and `env`
    /// (what Terraform sets, plus endpoints for the emulators): nothing leaks
    /// in from the test's own environment.
    pub async fn start(
        binary: &std::path::Path,
        name: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let region = crate::identity::REGION;
        let arn = format!("arn:aws:lambda:{region}:{}:function:{name}", crate::identity::ACCOUNT);
        let api = RuntimeApi::start(&arn).await?;
        let log = std::env::temp_dir().join(format!("{name}-{}.log", api.addr.port()));
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = std::process::Command::new(binary)
            .env_clear()
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", api.address()),
                ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
                ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
                ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]0".to_owned()),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
                ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
                ("AWS_REGION", region.to_owned()),
                ("AWS_DEFAULT_REGION", region.to_owned()),
                ("_HANDLER", "bootstrap".to_owned()),
                ("TZ", ":UTC".to_owned()),
            ])
            .envs(env)
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Function { api, child, log })
    }

    /// Invoke with `payload`, `timeout` to the deadline.
    pub async fn invoke(&mut self, payload: &serde_json::Value, timeout: Duration) -> Result<Outcome> {
        self.api
            .invoke(payload, timeout)
            .await
            .with_context(|| format!("the function's output:\n{}", self.output()))
    }

    /// Wait up to `timeout` for the process to exit; its status, if it did.
    pub async fn exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process wrote (its JSON logs).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What a function's process gets on this stack besides its own variables:
/// credentials (Lambda gives the role's session; here the stack's keys) and
/// each emulator's endpoint, which the SDK reads from `AWS_ENDPOINT_URL_*`.
pub fn stack_environment(stack: &crate::LocalStack) -> std::collections::BTreeMap<String, String> {
    [
        ("AWS_ACCESS_KEY_ID", crate::identity::ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", crate::identity::SECRET_KEY.to_owned()),
        ("AWS_SESSION_TOKEN", "local-session".to_owned()),
        ("AWS_ENDPOINT_URL_S3", stack.s3_endpoint.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint.clone()),
        ("AWS_ENDPOINT_URL_SQS", stack.sqs_endpoint.clone()),
        ("AWS_ENDPOINT_URL_SNS", stack.sns_endpoint.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
