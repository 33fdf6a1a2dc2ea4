//! The reference consumer Lambda: the feed's SQS records into a read model table.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use feed::{handler, DynamoReadModel};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .init();
    let table = handler::read_model_table(|k| std::env::var(k).ok())?;
    let aws = aws_config::load_from_env().await;
    let model = DynamoReadModel::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let model = &model;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(handler::handle_batch(model, event.payload).await.0)
    }))
    .await
}
