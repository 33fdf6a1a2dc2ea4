//! The ingest Lambda: clients from the environment, then the library.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use ingest::{handler, Config, Ingester};
use lambda_runtime::{service_fn, Error, LambdaEvent};

// Many small allocations per line (the SDK's item maps): mimalloc more than
// doubles the parse-and-build throughput over the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .without_time()
        .init();
    let config = Config::from_env()?;
    let aws = aws_config::load_from_env().await;
    // An endpoint override means an S3-compatible endpoint (an emulator),
    // which takes path-style requests; AWS's own endpoints take virtual-hosted ones.
    let path_style = aws.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws)
            .force_path_style(path_style)
            .build(),
    );
    let ingester = Ingester::new(
        s3,
        aws_sdk_dynamodb::Client::new(&aws),
        schema::Registry::builtin(),
        config,
    )
    .with_continuations(aws_sdk_sqs::Client::new(&aws));
    let ingester = &ingester;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = remaining(event.context.deadline).map(|r| Instant::now() + r);
        Ok::<SqsBatchResponse, Error>(handler::handle_batch(ingester, event.payload, deadline).await)
    }))
    .await
}

/// Time left until the invocation's deadline (epoch milliseconds).
fn remaining(deadline_ms: u64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    deadline_ms.checked_sub(now).map(Duration::from_millis)
}
