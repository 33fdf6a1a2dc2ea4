//! The reference consumer Lambda binary itself (its `main`: the table from
//! the environment Terraform sets, clients from the environment, the runtime
//! loop, the JSON it answers) run as Lambda runs it: a process polling a
//! Runtime API, invoked with the SQS records its mapping delivers, writing
//! its read model table on the local stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use feed::{DynamoReadModel, ReadModel};
use localstack::resources;
use localstack::runtime_api::{stack_environment, Function, Outcome};
use localstack::testing::sqs_record;
use localstack::{LocalStack, Ports, State};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_consumer");
const TIMEOUT: Duration = Duration::from_secs(60);
const TABLE: &str = "csv-pipeline-read-model";

fn change(country: &str, version: u64, orders: &str) -> String {
    json!({
        "type": "aggregate.changed", "schema_version": 2, "id": format!("{country}-{version}"),
        "dataset": "orders", "aggregate": "by_country", "group": { "country": country },
        "values": { "orders": orders }, "version": version, "changed_at": "2026-11-30T00:00:00.000Z"
    })
    .to_string()
}

/// What `terraform/modules/reference-consumer` sets, and where the emulators are.
fn environment(stack: &LocalStack) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("READ_MODEL_TABLE".to_owned(), TABLE.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ]);
    env.extend(stack_environment(stack));
    env
}

async fn held(ddb: &aws_sdk_dynamodb::Client) -> BTreeMap<String, (u64, String)> {
    let model: ReadModel = DynamoReadModel::new(ddb.clone(), TABLE)
        .groups()
        .await
        .unwrap()
        .into_iter()
        .collect();
    model
        .groups()
        .map(|g| (g.key.group["country"].clone(), (g.version, g.values["orders"].clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_keeps_the_newest_version_and_reports_only_poison() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let ddb = stack.clients().dynamodb;
    resources::ensure_aggregates_table(&ddb, TABLE).await.unwrap();
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-consumer", &environment(&stack))
        .await
        .unwrap();
    let batch = json!({ "Records": [
        sqs_record("m1", &change("DE", 2, "2")),
        sqs_record("m2", &change("DE", 1, "1")),
        sqs_record("m3", "{not json"),
        sqs_record("m4", &change("FR", 1, "5")),
        sqs_record("m5", &change("DE", 2, "2")),
        sqs_record("m6", &change("DE", 2, "2").replace("\"schema_version\":2", "\"schema_version\":9")),
    ]});
    let answer = f.invoke(&batch, TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [{ "itemIdentifier": "m3" }, { "itemIdentifier": "m6" }] })),
        "{}",
        f.output()
    );
    let want = BTreeMap::from([
        ("DE".to_owned(), (2, "2".to_owned())),
        ("FR".to_owned(), (1, "5".to_owned())),
    ]);
    assert_eq!(held(&ddb).await, want);
    assert!(
        f.output().contains("newer_schema"),
        "the poison's kind is logged: {}",
        f.output()
    );

    // Late and duplicated messages alone: nothing written, nothing reported.
    let stale =
        json!({ "Records": [sqs_record("m7", &change("DE", 1, "1")), sqs_record("m8", &change("FR", 1, "5"))] });
    let answer = f.invoke(&stale, TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [] })),
        "{}",
        f.output()
    );
    assert_eq!(held(&ddb).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_variable_stops_the_function_before_its_first_event() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let mut env = environment(&stack);
    env.remove("READ_MODEL_TABLE");
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-consumer", &env)
        .await
        .unwrap();
    let status = f.exit(Duration::from_secs(10)).await.expect("the function exits");
    assert!(!status.success(), "{status}");
    assert_eq!(f.api.next_calls(), 0, "it asked for an event");
    assert!(f.output().contains("READ_MODEL_TABLE"), "{}", f.output());
}
