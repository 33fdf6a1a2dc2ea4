//! The projector Lambda binary itself (its `main`: configuration from the
//! environment Terraform sets, clients from the environment, the runtime loop,
//! the JSON it answers) run as Lambda runs it: a process polling a Runtime
//! API, invoked with the stream batch the mapping delivers (its filters
//! applied), on the local stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_lambda_events::dynamodb::EventRecord;
use localstack::clients::Clients;
use localstack::pollers::matches_any;
use localstack::resources::{self, Deployment, Names};
use localstack::runtime_api::{stack_environment, Function, Outcome};
use localstack::settings::Settings;
use localstack::streams::StreamReader;
use localstack::testing::{oracle_of, Folded};
use localstack::{LocalStack, Ports, State};
use serde_json::{json, Value};

/// The local stack with the deployment's resources, and the file ingested.
struct Target {
    stack: LocalStack,
    clients: Clients,
    deployment: Deployment,
    csv: Vec<u8>,
}

async fn target() -> Target {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let clients = stack.clients();
    let deployment = resources::provision(&clients, &Names::local(), false).await.unwrap();
    Target {
        stack,
        clients,
        deployment,
        csv: Vec::new(),
    }
}

const BINARY: &str = env!("CARGO_BIN_EXE_projector");
const TIMEOUT: Duration = Duration::from_secs(60);

/// The local stack with the deployment's resources, one `orders` file
/// ingested (good and bad lines), and the stream records the mapping would
/// deliver for it, filters applied.
async fn ingested() -> (Target, Vec<EventRecord>) {
    let mut target = target().await;
    let names = &target.deployment.names.clone();
    let key = "uploads/orders/projected.csv";
    let mut csv = Vec::new();
    let spec = localstack::generate::Spec {
        shape: Default::default(),
        lines: Some(120),
        bytes: None,
        bad_every: 9,
        seed: 11,
    };
    localstack::generate::orders(&mut csv, spec).unwrap();
    localstack::upload::upload_bytes(&target.clients.s3, &names.bucket, key, csv.clone())
        .await
        .unwrap();
    let ingester = ingest::Ingester::new(
        target.clients.s3.clone(),
        target.clients.dynamodb.clone(),
        schema::Registry::builtin(),
        {
            let env = Settings::get().ingest_environment(names, &target.deployment.ingest_queue_url);
            ingest::Config::from_lookup(|k| env.get(k).cloned()).unwrap()
        },
    );
    let object = ingest::ObjectRef {
        bucket: names.bucket.clone(),
        key: key.to_owned(),
        size: None,
        version_id: None,
        sequencer: None,
    };
    ingester.ingest_object(&object, None).await.unwrap();
    target.csv = csv;
    let mut reader = StreamReader::open(
        &target.clients.dynamodb,
        target.clients.streams.clone(),
        &names.events_table,
    )
    .await
    .unwrap();
    let filters = Settings::get().projector.filters;
    let records: Vec<EventRecord> = reader
        .drain(1000)
        .await
        .unwrap()
        .concat()
        .into_iter()
        .filter(|r| matches_any(&serde_json::to_value(r).unwrap(), &filters))
        .collect();
    (target, records)
}

/// What `terraform/lambda.tf` sets, what Lambda sets for the role's
/// credentials, and where the emulators are (the only local addition).
fn environment(target: &Target) -> BTreeMap<String, String> {
    let d = &target.deployment;
    let mut env = Settings::get().projector_environment(&d.names, &d.feed_topic_arn);
    env.extend(stack_environment(&target.stack));
    env
}

/// The typed aggregates (all but the per-file statistics), as stored.
async fn typed_aggregates(target: &Target) -> Folded {
    let mut out = Folded::new();
    let mut items = target
        .clients
        .dynamodb
        .scan()
        .table_name(&target.deployment.names.aggregates_table)
        .into_paginator()
        .items()
        .send();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        if item["kind"].as_s().unwrap() != schema::AggregatesKind::Aggregate.as_str() {
            continue;
        }
        let a = schema::AggregateItem::from_item(item).unwrap();
        if a.aggregate == projector::fold::FILE_STATS {
            continue;
        }
        let measures = a
            .measures
            .iter()
            .map(|(k, v)| (k.clone(), v.parse::<rust_decimal::Decimal>().unwrap()))
            .collect();
        out.insert((a.aggregate, a.group_values), measures);
    }
    out
}

async fn feed_messages(target: &Target) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = target
            .clients
            .sqs
            .receive_message()
            .queue_url(&target.deployment.feed_queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_projects_a_stream_batch_and_announces_it() {
    let (target, records) = ingested().await;
    let events = records.len();
    assert!(events > 100, "the file's events and its final manifest: {events}");
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-projector", &environment(&target))
        .await
        .unwrap();
    let answer = f.invoke(&json!({ "Records": records }), TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [] })),
        "{}",
        f.output()
    );

    // The aggregates are exactly an independent fold of the file.
    let want = oracle_of(&[("orders/projected.csv", target.csv.clone())]);
    let live = typed_aggregates(&target).await;
    assert_eq!(live, want, "{}", f.output());
    // Every change announced, and the file's completion.
    let feed = feed_messages(&target).await;
    let groups = |ms: &[Value]| {
        ms.iter()
            .filter(|m| m["type"] == "aggregate.changed")
            .map(|m| format!("{}/{}", m["aggregate"], m["group"]))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let completed = feed.iter().filter(|m| m["type"] == "file.completed").count();
    // Every typed group, and the file's statistics.
    assert_eq!((groups(&feed).len(), completed), (want.len() + 1, 1), "{feed:?}");

    // Delivered again (a retry after a lost answer): nothing changes, and the
    // same message ids are announced again.
    let answer = f.invoke(&json!({ "Records": records }), TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [] })),
        "{}",
        f.output()
    );
    assert_eq!(typed_aggregates(&target).await, want);
    let again = feed_messages(&target).await;
    let ids = |ms: &[Value]| {
        ms.iter()
            .map(|m| m["id"].to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    // A replay announces each group once, at its stored state: ids already
    // sent for that state (a group changed twice in the first delivery was
    // announced at both versions then).
    assert!(ids(&again).is_subset(&ids(&feed)), "{again:?}");
    assert_eq!(groups(&again), groups(&feed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_it_cannot_project_is_the_batch_item_failure() {
    let (target, records) = ingested().await;
    let mut bad: Value = serde_json::to_value(&records[5]).unwrap();
    bad["dynamodb"]["NewImage"]["dataset"] = json!({ "S": "no_such_dataset" });
    bad["dynamodb"]["SequenceNumber"] = json!("900000000000000000005");
    let mut batch: Vec<Value> = records[..10].iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    batch.insert(6, bad);
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-projector", &environment(&target))
        .await
        .unwrap();
    let answer = f.invoke(&json!({ "Records": batch }), TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [{ "itemIdentifier": "900000000000000000005" }] })),
        "{}",
        f.output()
    );
    assert!(
        f.output().contains("no_such_dataset"),
        "the reason is logged: {}",
        f.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_stops_the_function_before_its_first_event() {
    let target = target().await;
    let mut env = environment(&target);
    env.remove("FEED_TOPIC_ARN");
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-projector", &env)
        .await
        .unwrap();
    // Like a Lambda whose init fails: the process ends, naming the
    // variable, before it asks for any event.
    let status = f.exit(Duration::from_secs(10)).await.expect("the function exits");
    assert!(!status.success(), "{status}");
    assert_eq!(f.api.next_calls(), 0, "it asked for an event");
    assert!(f.output().contains("FEED_TOPIC_ARN"), "{}", f.output());
}
