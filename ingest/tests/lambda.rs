//! The ingest Lambda binary itself (its `main`: configuration from the
//! environment Terraform sets, clients from the environment, the runtime loop,
//! the JSON it answers) run as Lambda runs it: a process polling a Runtime
//! API, invoked with the SQS event the mapping delivers, on the local stack.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use localstack::clients::Clients;
use localstack::resources::{self, Names};
use localstack::runtime_api::{stack_environment, Function, Outcome};
use localstack::settings::Settings;
use localstack::testing::{orders, put_notification, sqs_record as record};
use localstack::{LocalStack, Ports, State};
use schema::items::{FileStatus, Manifest};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_ingest");

struct Stack {
    stack: LocalStack,
    clients: Clients,
    names: Names,
    deployment: resources::Deployment,
}

async fn stack() -> Stack {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let clients = stack.clients();
    let names = Names::local();
    let deployment = resources::provision(&clients, &names, false).await.unwrap();
    Stack {
        stack,
        clients,
        names,
        deployment,
    }
}

impl Stack {
    /// What `terraform/lambda.tf` sets, what Lambda sets for the role's
    /// credentials, and where the emulators are (the only local addition).
    fn environment(&self) -> BTreeMap<String, String> {
        let mut env = Settings::get().ingest_environment(&self.names, &self.deployment.ingest_queue_url);
        env.extend(stack_environment(&self.stack));
        env
    }

    async fn manifest(&self, file_id: &str) -> Manifest {
        let item = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.names.events_table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(schema::keys::manifest_pk(file_id)),
            )
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
            .expect("a manifest");
        serde_dynamo::from_item(item).unwrap()
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_the_batch_with_its_failed_messages_only() {
    let s = stack().await;
    let key = "uploads/orders/lambda.csv";
    let file_id = localstack::upload::upload_bytes(&s.clients.s3, &s.names.bucket, key, orders(30, 7))
        .await
        .unwrap();
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-ingest", &s.environment())
        .await
        .unwrap();
    let good = record(
        "good",
        &put_notification(&s.names.bucket, key, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
    );
    let garbage = record("garbage", "this is not an S3 notification");
    let test_event = record(
        "test",
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-29T17:40:02.089Z","Bucket":"b","RequestId":"5582815E1AEA5ADF","HostId":"8cLe"}"#,
    );
    let event = json!({ "Records": [good, garbage, test_event] });

    let answer = f.invoke(&event, TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [{ "itemIdentifier": "garbage" }] })),
        "{}",
        f.output()
    );
    let m = s.manifest(&file_id).await;
    assert_eq!(
        (m.status, m.rows, m.accepted, m.rejected),
        (FileStatus::Complete, 30, 30, 0)
    );

    // The same process takes the next invocation: the same upload again is a
    // duplicate, and nothing fails.
    let again = json!({ "Records": [record("good-again", &put_notification(&s.names.bucket, key, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"))] });
    let answer = f.invoke(&again, TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        Outcome::Response(json!({ "batchItemFailures": [] })),
        "{}",
        f.output()
    );
    // Its logs are JSON lines, as CloudWatch gets them (RUST_LOG=info, as
    // Terraform sets it: the batch's work is logged).
    let logs = f.output();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the function logged nothing");
    assert!(lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_is_not_an_sqs_batch_is_an_invocation_error() {
    let s = stack().await;
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-ingest", &s.environment())
        .await
        .unwrap();
    let answer = f.invoke(&json!({ "Records": "not a list" }), TIMEOUT).await.unwrap();
    let Outcome::Error(e) = answer else {
        panic!("expected an invocation error, got {answer:?}")
    };
    assert!(e["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_stops_the_function_before_its_first_event() {
    let s = stack().await;
    let mut env = s.environment();
    env.remove("EVENTS_TABLE");
    let mut f = Function::start(Path::new(BINARY), "csv-pipeline-ingest", &env)
        .await
        .unwrap();
    // Like a Lambda whose init fails: the process ends, naming the
    // variable, before it asks for any event.
    let status = f.exit(Duration::from_secs(10)).await.expect("the function exits");
    assert!(!status.success(), "{status}");
    assert_eq!(f.api.next_calls(), 0, "it asked for an event");
    assert!(f.output().contains("EVENTS_TABLE"), "{}", f.output());
}
