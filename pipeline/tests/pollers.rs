//! The local event source mappings with Lambda's semantics, on the real
//! handlers: a message the ingest handler fails is retried, then
//! dead-lettered, while the rest of its batch is done; stream records the
//! projector keeps failing are retried, bisected, then described on the
//! on-failure queue, and the records around them are projected.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use ingest::{handler, Config, Ingester};
use localstack::pollers::{queue_depth, SqsPoller, StreamPoller};
use localstack::settings::Settings;
use localstack::streams::StreamReader;
use localstack::testing::orders;
use pipeline::target::Target;
use schema::Registry;

#[tokio::test]
async fn a_failing_message_is_retried_then_dead_lettered_and_the_rest_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::embedded(tmp.path(), Default::default(), false).await.unwrap();
    let d = &t.deployment;
    let s3 = &t.clients.s3;
    // Two good uploads: the S3 notifications reach the ingest queue.
    for (i, key) in ["uploads/orders/a.csv", "uploads/orders/b.csv"].iter().enumerate() {
        localstack::upload::upload_bytes(s3, &d.names.bucket, key, orders(20, i as u64 + 1))
            .await
            .unwrap();
    }
    // And a message no S3 would send: the handler fails it, every time.
    t.clients
        .sqs
        .send_message()
        .queue_url(&d.ingest_queue_url)
        .message_body("{\"Records\": \"not a list\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(queue_depth(&t.clients.sqs, &d.ingest_queue_url).await.unwrap(), 3);

    let mut config = Config::new(&d.names.events_table);
    config.upload_prefix = d.names.upload_prefix.clone();
    let ingester = Ingester::new(s3.clone(), t.clients.dynamodb.clone(), Registry::builtin(), config);
    let mut poller = SqsPoller::new(t.clients.sqs.clone(), &d.ingest_queue_url, 10)
        .await
        .unwrap();
    poller.retry_after = Some(Duration::from_secs(1));
    let (mut received, mut failures, mut polls) = (0, 0, 0);
    while queue_depth(&t.clients.sqs, &d.ingest_queue_url).await.unwrap() > 0 {
        let p = poller
            .poll_once(async |e| handler::handle_batch(&ingester, e, None).await, 1)
            .await
            .unwrap();
        received += p.received;
        failures += p.failed.len();
        polls += 1;
        assert!(polls < 100, "the queue never emptied");
    }
    // SQS moves a message once it has been received `maxReceiveCount` times:
    // the handler saw it exactly that often, as on AWS.
    let max = Settings::get().ingest.max_receive_count as usize;
    assert_eq!(failures, max, "received and failed exactly maxReceiveCount times");
    assert_eq!(received, 2 + failures, "the good messages were received once each");
    // The bad message is in the DLQ, untouched; the good files are complete.
    let dlq_url = t
        .clients
        .sqs
        .get_queue_url()
        .queue_name(&d.names.ingest_dlq)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dead = t
        .clients
        .sqs
        .receive_message()
        .queue_url(&dlq_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["{\"Records\": \"not a list\"}"]);
    for key in ["uploads/orders/a.csv", "uploads/orders/b.csv"] {
        let f = pipeline::queries::file_summary(&t, key).await.unwrap();
        assert_eq!((f.status.as_str(), f.accepted), ("complete", 20), "{key}");
    }
    t.close().await;
}

#[tokio::test]
async fn stream_records_that_keep_failing_go_to_the_on_failure_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::embedded(tmp.path(), Default::default(), false).await.unwrap();
    let d = &t.deployment;
    // Ten events of a real file, and one event naming a dataset nobody
    // defines in the middle: the projector cannot fold it.
    let bytes = orders(10, 7);
    localstack::upload::upload_bytes(&t.clients.s3, &d.names.bucket, "uploads/orders/c.csv", bytes)
        .await
        .unwrap();
    put_bad_event(&t).await;
    let mut config = Config::new(&d.names.events_table);
    config.upload_prefix = d.names.upload_prefix.clone();
    let ingester = Ingester::new(
        t.clients.s3.clone(),
        t.clients.dynamodb.clone(),
        Registry::builtin(),
        config,
    );
    let poller = SqsPoller::new(t.clients.sqs.clone(), &d.ingest_queue_url, 10)
        .await
        .unwrap();
    poller
        .poll_once(async |e| handler::handle_batch(&ingester, e, None).await, 1)
        .await
        .unwrap();
    let mut settings = Settings::get().projector.mapping();
    settings.maximum_retry_attempts = 3;
    let reader = StreamReader::open(&t.clients.dynamodb, t.clients.streams.clone(), &d.names.events_table)
        .await
        .unwrap();
    let total_records = {
        let mut r = StreamReader::open(&t.clients.dynamodb, t.clients.streams.clone(), &d.names.events_table)
            .await
            .unwrap();
        r.drain(1000).await.unwrap().iter().map(Vec::len).sum::<usize>() as u64
    };
    let mut stream = StreamPoller::new(reader, settings, t.clients.sqs.clone(), &d.projector_failures_url);
    let projector = projector::project::Projector::new(
        t.clients.dynamodb.clone(),
        d.names.aggregates_table.clone(),
        &Registry::builtin(),
    );
    let feed = projector::feed::Feed::new(t.clients.sns.clone(), d.feed_topic_arn.clone());
    let (mut read, mut invocations, mut given_up) = (0, 0, 0);
    loop {
        let p = stream
            .poll_once(
                async |e| projector::handler::handle_batch(&projector, &feed, e).await.0,
                true,
            )
            .await
            .unwrap();
        if p.records == 0 && stream.buffered() == 0 {
            break;
        }
        read += p.records;
        invocations += p.invocations;
        given_up += p.sent_to_on_failure;
    }
    assert_eq!(read, total_records);
    assert_eq!(given_up, 1, "only the bad record is given up on");
    // First in its batch: the batch is halved down to the bad record, which
    // is then retried alone until the retries run out.
    assert!(invocations > 1 + 3, "retried and bisected: {invocations} invocations");
    // The on-failure message says where the record is, as Lambda's does.
    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(&d.projector_failures_url)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(out.messages()[0].body().unwrap()).unwrap();
    assert_eq!(body["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(body["DDBStreamBatchInfo"]["batchSize"], 1);
    // Every good event was folded: the file's statistics are whole.
    let rows = pipeline::queries::read_aggregates(&t.clients.dynamodb, &d.names.aggregates_table, Some("orders"))
        .await
        .unwrap();
    let stats = rows.iter().find(|r| r.aggregate == "file_stats").unwrap();
    assert_eq!(stats.measures["accepted"], "10");
    t.close().await;
}

/// An event first on the stream, naming a dataset nobody defines.
async fn put_bad_event(t: &Target) {
    let d = &t.deployment;
    let mut bad = std::collections::HashMap::new();
    for (k, v) in [
        (schema::keys::PK, AttributeValue::S(schema::keys::event_pk("ffff", 1))),
        (schema::keys::SK, AttributeValue::N("1".into())),
        ("kind", AttributeValue::S("event".into())),
        ("event_type", AttributeValue::S("row.accepted".into())),
        ("event_version", AttributeValue::N("1".into())),
        ("file_id", AttributeValue::S("ffff".into())),
        ("dataset", AttributeValue::S("nobody-defines-this".into())),
        ("dataset_version", AttributeValue::N("1".into())),
    ] {
        bad.insert(k.to_owned(), v);
    }
    t.clients
        .dynamodb
        .put_item()
        .table_name(&d.names.events_table)
        .set_item(Some(bad))
        .send()
        .await
        .unwrap();
}
