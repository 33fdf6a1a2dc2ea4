//! The projector Lambda: clients from the environment, then the library.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use projector::feed::Feed;
use projector::project::Projector;
use projector::Config;

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
    let projector = Projector::new(
        aws_sdk_dynamodb::Client::new(&aws),
        config.aggregates_table,
        &schema::Registry::builtin(),
    );
    let feed = Feed::new(aws_sdk_sns::Client::new(&aws), config.feed_topic_arn);
    let (projector, feed) = (&projector, &feed);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let (response, _) = projector::handler::handle_batch(projector, feed, event.payload).await;
        Ok::<DynamoDbEventResponse, Error>(response)
    }))
    .await
}
