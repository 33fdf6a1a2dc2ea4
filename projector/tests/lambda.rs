//! The projector Lambda binary itself (its `main`: configuration from the
//! environment Terraform sets, clients from the environment, the runtime loop,
//! the JSON it answers) run as Lambda runs it: a process polling a Runtime
//! API, invoked with the stream batch the mapping delivers (its filters
//! applied), on the local stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_lambda_events::dynamodb::EventRecord;
use pipeline::runtime_api::{Function, Outcome};
use pipeline::settings::{matches_any, Settings};
use pipeline::stack::{LocalStack, Ports, State, ACCESS_KEY, SECRET_KEY};
use pipeline::streams::StreamReader;
use pipeline::target::Target;
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_projector");
const TIMEOUT: Duration = Duration::from_secs(60);

/// The local stack with the deployment's resources, one `orders` file
/// ingested (good and bad lines), and the stream records the mapping would
/// deliver for it, filters applied.
async fn ingested(dir: &Path) -> (Target, Vec<EventRecord>) {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let target = Target::on_stack(stack, dir).await.unwrap();
    let names = &target.deployment.names;
    let key = "uploads/orders/projected.csv";
    let mut csv = Vec::new();
    let spec = pipeline::generate::Spec {
        lines: Some(120),
        bytes: None,
        bad_every: 9,
        seed: 11,
    };
    pipeline::generate::orders(&mut csv, spec).unwrap();
    pipeline::upload::upload_bytes(&target.clients.s3, &names.bucket, key, csv)
        .await
        .unwrap();
    let ingester = ingest::Ingester::new(
        target.clients.s3.clone(),
        target.clients.dynamodb.clone(),
        schema::Registry::builtin(),
        Settings::get().ingest_config(names).unwrap(),
    );
    let object = ingest::ObjectRef {
        bucket: names.bucket.clone(),
        key: key.to_owned(),
        size: None,
        version_id: None,
        sequencer: None,
    };
    ingester.ingest_object(&object, None).await.unwrap();
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
    let mut env = Settings::get().projector_environment(&d.names, &d.feed_queue_url);
    let stack = target.stack.as_ref().unwrap();
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET_KEY.to_owned()),
        ("AWS_SESSION_TOKEN".to_owned(), "local-session".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), stack.dynamodb_endpoint.clone()),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), stack.sqs_endpoint.clone()),
    ]);
    env
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
    let dir = tempfile::tempdir().unwrap();
    let (target, records) = ingested(dir.path()).await;
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

    // The aggregates are exactly a fold of every event in the table.
    let rebuild = pipeline::ops::rebuild(&target).await.unwrap();
    assert!(rebuild.live_groups > 0);
    assert_eq!(rebuild.differences, vec![], "{}", f.output());
    // Every change announced, and the file's completion.
    let feed = feed_messages(&target).await;
    let changed: std::collections::BTreeSet<String> = feed
        .iter()
        .filter(|m| m["type"] == "aggregate.changed")
        .map(|m| format!("{}/{}/{}", m["aggregate"], m["group"], m["version"]))
        .collect();
    let groups: std::collections::BTreeSet<String> = changed
        .iter()
        .map(|c| c.rsplit_once('/').unwrap().0.to_owned())
        .collect();
    let completed = feed.iter().filter(|m| m["type"] == "file.completed").count();
    assert_eq!((groups.len() as u64, completed), (rebuild.live_groups, 1), "{feed:?}");

    // Delivered again (a retry after a lost answer): nothing changes, and the
    // same message ids are announced again.
    let answer = f.invoke(&json!({ "Records": records }), TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [] })),
        "{}",
        f.output()
    );
    assert_eq!(pipeline::ops::rebuild(&target).await.unwrap().differences, vec![]);
    let again = feed_messages(&target).await;
    let ids = |ms: &[Value]| {
        ms.iter()
            .map(|m| m["id"].to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(ids(&again), ids(&feed));
    target.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_it_cannot_project_is_the_batch_item_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (target, records) = ingested(dir.path()).await;
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
    target.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_stops_the_function_before_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let target = Target::on_stack(stack, dir.path()).await.unwrap();
    let mut env = environment(&target);
    env.remove("FEED_QUEUE_URL");
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-projector", &env)
        .await
        .unwrap();
    let e = f
        .invoke(&json!({ "Records": [] }), Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("FEED_QUEUE_URL"), "{e:#}");
    target.close().await;
}
