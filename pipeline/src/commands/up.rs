//! `pipeline up`: serve the local stack on fixed ports until Ctrl-C, for any
//! AWS SDK or CLI, with the pipeline running on it.

use std::path::PathBuf;

use anyhow::Result;
use localstack::identity::{ACCESS_KEY, REGION, SECRET_KEY};
use localstack::{LocalStack, Ports, State};

use crate::target::Target;

/// Serve the stack on `ports` with the pipeline running on it, until Ctrl-C.
pub(super) async fn serve(state: PathBuf, ports: Ports, consumer: bool) -> Result<()> {
    let stack = LocalStack::start(State::Dir(state.clone()), ports).await?;
    let target = Target::on_stack(stack, &state, consumer).await?;
    let stack = target.stack.as_ref().expect("embedded");
    let up = crate::target::UpFile {
        dynamodb: stack.dynamodb_endpoint.clone(),
        s3: stack.s3_endpoint.clone(),
        sqs: stack.sqs_endpoint.clone(),
        sns: stack.sns_endpoint.clone(),
        pid: std::process::id(),
    };
    let up_file = crate::target::up_file(&state);
    std::fs::write(&up_file, serde_json::to_vec_pretty(&up)?)?;
    let d = &target.deployment;
    println!("local stack up, state in {}", state.display());
    println!("  DynamoDB + Streams  {}", up.dynamodb);
    println!("  S3                  {}", up.s3);
    println!("  SQS                 {}", up.sqs);
    println!("  SNS                 {}", up.sns);
    println!(
        "  upload to s3://{}/{}<dataset>/<file>.csv (path-style addressing)",
        d.names.bucket, d.names.upload_prefix
    );
    println!("  feed topic {}", d.feed_topic_arn);
    println!("  feed queue {} (subscribed, raw)", d.feed_queue_url);
    if let Some(c) = &d.consumer {
        println!(
            "  reference consumer: queue {} (subscribed, filtered), read model table {}",
            c.queue_url, c.read_model_table
        );
    }
    println!("\nThe ingest and projector run here, on the queue and the stream. For any AWS SDK or CLI:\n");
    println!("export AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_REGION={REGION}");
    println!(
        "export AWS_ENDPOINT_URL_DYNAMODB={0} AWS_ENDPOINT_URL_DYNAMODB_STREAMS={0} AWS_ENDPOINT_URL_S3={1} AWS_ENDPOINT_URL_SQS={2} AWS_ENDPOINT_URL_SNS={3}",
        up.dynamodb, up.s3, up.sqs, up.sns
    );
    println!("\nOther `pipeline` commands in this directory use this stack. Ctrl-C stops it.");
    let served = tokio::select! {
        r = crate::pump::serve(&target) => r,
        r = tokio::signal::ctrl_c() => r.map_err(anyhow::Error::from),
    };
    let _ = std::fs::remove_file(&up_file);
    target.close().await;
    served
}
