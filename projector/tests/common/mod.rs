//! The projector's tests on the local stack: a stack per test with both
//! tables and the bucket, `data/` files ingested by the real ingester, and
//! the events table's stream read through the real DynamoDB Streams API.
#![allow(dead_code)]

use aws_lambda_events::dynamodb::EventRecord;
use ingest::{handler, Config, Ingester};
use localstack::resources::{self, Names};
use localstack::streams::StreamReader;
use localstack::{LocalStack, Ports, State};
use schema::Registry;

pub use localstack::testing::{batch, data, notification};

/// A fresh stack with the deployment's tables and bucket, and an ingester.
pub struct Env {
    pub stack: LocalStack,
    pub names: Names,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub ingester: Ingester,
}

pub async fn env() -> Env {
    let stack = LocalStack::start(State::Memory, Ports::default())
        .await
        .expect("local stack starts");
    let names = Names::local();
    let c = stack.clients();
    resources::ensure_events_table(&c.dynamodb, &names.events_table)
        .await
        .unwrap();
    resources::ensure_aggregates_table(&c.dynamodb, &names.aggregates_table)
        .await
        .unwrap();
    resources::ensure_bucket(&c.s3, &names.bucket).await.unwrap();
    let ingester = Ingester::new(
        c.s3.clone(),
        c.dynamodb.clone(),
        Registry::builtin(),
        Config::new(&names.events_table),
    );
    Env {
        stack,
        names,
        ddb: c.dynamodb,
        s3: c.s3,
        ingester,
    }
}

impl Env {
    pub fn bucket(&self) -> &str {
        &self.names.bucket
    }

    /// Upload `data/` files and ingest them through the SQS handler, ten
    /// notifications a batch.
    pub async fn ingest_all(&self, keys: &[&str]) {
        let mut messages = Vec::new();
        for key in keys {
            localstack::upload::upload_bytes(&self.s3, self.bucket(), key, data(key))
                .await
                .unwrap();
            messages.push(notification(&format!("m-{key}"), self.bucket(), key));
        }
        for chunk in messages.chunks(10) {
            let r = handler::handle_batch(&self.ingester, batch(chunk.to_vec()), None).await;
            assert!(r.batch_item_failures.is_empty());
        }
    }

    /// The whole stream so far, in batches of `limit`.
    pub async fn stream_batches(&self, limit: i32) -> Vec<Vec<EventRecord>> {
        let mut r = StreamReader::open(&self.ddb, self.stack.clients().streams, &self.names.events_table)
            .await
            .unwrap();
        r.drain(limit).await.unwrap()
    }
}
