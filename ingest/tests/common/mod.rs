//! The ingest's tests on the local stack: a stack per test with the events
//! table and the bucket, and the real ingester on real SDK clients, observed
//! and faulted through SDK interceptors (the data path itself is never faked).
#![allow(dead_code, unused_imports)]

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use ingest::{Config, Ingester};
use localstack::clients::shared;
use localstack::metrics::RequestCounter as Counter;
use localstack::resources::{self, Names};
use localstack::testing::{fail_event_puts, FailAfter, S3Reads};
use localstack::{LocalStack, Ports, State};
use schema::items::{EventItem, Manifest};
use schema::Registry;

pub use localstack::testing::{batch, data, notification, orders, version_of};

/// A fresh stack with the table and bucket, and an ingester on it.
pub struct Env {
    pub stack: LocalStack,
    pub names: Names,
    pub s3: aws_sdk_s3::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub counter: Counter,
    pub fault: FailAfter,
    pub reads: S3Reads,
    pub ingester: Ingester,
}

pub async fn env() -> Env {
    env_with(|c| c).await
}

pub async fn env_with(tune: impl FnOnce(Config) -> Config) -> Env {
    env_intercepted(tune, Vec::new()).await
}

/// [`env_with`], its clients also passing through `extra` interceptors.
pub async fn env_intercepted(tune: impl FnOnce(Config) -> Config, extra: Vec<SharedInterceptor>) -> Env {
    let stack = LocalStack::start(State::Memory, Ports::default())
        .await
        .expect("local stack starts");
    let names = Names::local();
    let counter = Counter::default();
    let fault = fail_event_puts();
    let reads = S3Reads::default();
    let mut interceptors = vec![shared(counter.clone()), shared(fault.clone()), shared(reads.clone())];
    interceptors.extend(extra);
    let clients = stack.clients_with(&interceptors);
    let (s3, ddb) = (clients.s3, clients.dynamodb);
    resources::ensure_events_table(&ddb, &names.events_table).await.unwrap();
    resources::ensure_bucket(&s3, &names.bucket).await.unwrap();
    let config = tune(Config::new(&names.events_table));
    let ingester = Ingester::new(s3.clone(), ddb.clone(), Registry::builtin(), config);
    counter.reset();
    Env {
        stack,
        names,
        s3,
        ddb,
        counter,
        fault,
        reads,
        ingester,
    }
}

impl Env {
    pub fn bucket(&self) -> &str {
        &self.names.bucket
    }

    pub fn object(&self, key: &str) -> ingest::ObjectRef {
        ingest::ObjectRef {
            bucket: self.names.bucket.clone(),
            key: key.to_owned(),
            size: None,
            version_id: None,
            sequencer: None,
        }
    }

    pub async fn put(&self, key: &str, bytes: &[u8]) -> String {
        localstack::upload::upload_bytes(&self.s3, self.bucket(), key, bytes.to_vec())
            .await
            .unwrap()
    }

    pub async fn manifest(&self, file_id: &str) -> Manifest {
        self.ingester
            .store()
            .manifest(file_id)
            .await
            .unwrap()
            .expect("manifest exists")
    }

    /// Every event of a file, by line, read page by page with `Query`.
    pub async fn events(&self, file_id: &str, lines: u64) -> Vec<EventItem> {
        let mut out = Vec::new();
        for pk in schema::keys::event_pages(file_id, lines) {
            let mut items = self
                .ddb
                .query()
                .table_name(&self.names.events_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .consistent_read(true)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = items.next().await {
                out.push(serde_dynamo::from_item::<_, EventItem>(item.unwrap()).unwrap());
            }
        }
        out.sort_by_key(|e| e.sk);
        out
    }

    /// Number of items in the table (events, manifests, uploads).
    pub async fn item_count(&self) -> usize {
        let mut n = 0;
        let mut pages = self
            .ddb
            .scan()
            .table_name(&self.names.events_table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            n += page.unwrap().count() as usize;
        }
        n
    }
}
