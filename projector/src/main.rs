//! The projector Lambda: clients from the environment, then the library.

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::DynamoDbEventResponse;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use projector::feed::Feed;
use projector::project::Projector;
use projector::ENV_VARS;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .without_time()
        .init();
    let var = |name: &str| std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
    let (table, queue) = (var(ENV_VARS[0])?, var(ENV_VARS[1])?);
    let aws = aws_config::load_from_env().await;
    let projector = Projector::new(aws_sdk_dynamodb::Client::new(&aws), table, &schema::Registry::builtin());
    let feed = Feed::new(aws_sdk_sqs::Client::new(&aws), queue);
    let (projector, feed) = (&projector, &feed);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let (response, _) = projector::handler::handle_batch(projector, feed, event.payload).await;
        Ok::<DynamoDbEventResponse, Error>(response)
    }))
    .await
}
