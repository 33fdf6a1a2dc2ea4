//! The change feed on the local stack: the projector's handler publishes to
//! the SNS emulator through the real SDK, the topic delivers to the feed
//! queue (raw), and a consumer reads it back.

mod common;

use std::collections::{BTreeMap, HashMap};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use common::{data, env, Env};
use localstack::clients::shared;
use localstack::resources;
use localstack::streams::StreamReader;
use localstack::testing::FailSends;
use projector::feed::Feed;
use projector::handler::handle_batch;
use projector::project::Projector;
use schema::feed::{FeedMessage, FEED_JSON_SCHEMA};
use schema::Registry;

struct Setup {
    env: Env,
    projector: Projector,
    feed: Feed,
    failing_feed: Feed,
    fail: FailSends,
    queue_url: String,
}

async fn setup(keys: &[&str]) -> Setup {
    let env = env().await;
    env.ingest_all(keys).await;
    let sqs = env.stack.clients().sqs;
    let queue_url = resources::ensure_queue_with_dlq(&sqs, &env.names.feed_queue, &env.names.feed_dlq, 5)
        .await
        .unwrap();
    let sns = env.stack.clients().sns;
    let topic = resources::ensure_topic(&sns, &env.names.feed_topic).await.unwrap();
    let queue_arn = localstack::queues::queue_arn(&sqs, &queue_url).await.unwrap();
    resources::ensure_subscription(&sns, &topic, &queue_arn, None, None)
        .await
        .unwrap();
    let fail = FailSends::default();
    let failing_sns = env.stack.clients_with(&[shared(fail.clone())]).sns;
    Setup {
        projector: Projector::new(
            env.stack.clients().dynamodb,
            env.names.aggregates_table.clone(),
            &Registry::builtin(),
        ),
        feed: Feed::new(sns, topic.clone()),
        failing_feed: Feed::new(failing_sns, topic),
        fail,
        queue_url,
        env,
    }
}

async fn batches(env: &Env, limit: i32) -> Vec<Vec<EventRecord>> {
    StreamReader::open(&env.ddb, env.stack.clients().streams, &env.names.events_table)
        .await
        .unwrap()
        .drain(limit)
        .await
        .unwrap()
}

fn event(records: &[EventRecord]) -> Event {
    let mut e = Event::default();
    e.records = records.to_vec();
    e
}

/// Everything on the queue, deleted as it is read (a real consumer), with the
/// `type` attribute of each.
async fn consume(s: &Setup) -> Vec<(serde_json::Value, String)> {
    let all = localstack::queues::take_all(&s.env.stack.clients().sqs, &s.queue_url)
        .await
        .unwrap();
    all.iter()
        .map(|m| {
            let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let ty = m
                .message_attributes()
                .and_then(|a| a.get("type"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            (body, ty)
        })
        .collect()
}

const DATA: &[&str] = &[
    "orders/2024-q1-marketplace.csv",
    "orders/bad-lines.csv",
    "orders/empty.csv",
    "shops/stores.csv",
];

#[tokio::test]
async fn every_message_validates_and_the_feed_matches_the_aggregates() {
    let s = setup(DATA).await;
    let mut events = 0;
    let mut sent = 0;
    let mut requests = 0;
    for b in batches(&s.env, 1000).await {
        let (response, report) = handle_batch(&s.projector, &s.feed, event(&b)).await;
        assert!(response.batch_item_failures.is_empty());
        events += report.outcome.applied;
        sent += report.sent.messages;
        requests += report.sent.requests;
    }
    println!(
        "SQS requests per event: {:.4} ({requests} for {events} events, {sent} messages)",
        requests as f64 / events as f64
    );

    let schema: serde_json::Value = serde_json::from_str(FEED_JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let received = consume(&s).await;
    assert_eq!(received.len() as u64, sent);
    type Group = (String, String, String);
    let mut latest: BTreeMap<Group, (u64, BTreeMap<String, String>)> = BTreeMap::new();
    let mut completed: HashMap<String, usize> = HashMap::new();
    for (body, ty) in &received {
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{body}: {errors:?}");
        let m: FeedMessage = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(m.kind(), ty, "the type attribute");
        match m {
            FeedMessage::AggregateChanged {
                dataset,
                aggregate,
                group,
                values,
                version,
                ..
            } => {
                let k = (dataset, aggregate, serde_json::to_string(&group).unwrap());
                let e = latest.entry(k).or_insert((0, BTreeMap::new()));
                if version > e.0 {
                    *e = (version, values);
                }
            }
            FeedMessage::FileCompleted { file_id, .. } => *completed.entry(file_id).or_default() += 1,
        }
    }
    // One file.completed per file.
    for key in DATA {
        assert_eq!(completed.get(&schema::keys::file_id_of(&data(key))), Some(&1), "{key}");
    }
    // The latest version of each group on the feed is the group's state in the table.
    let table = s.env.names.aggregates_table.clone();
    let mut items = s.env.ddb.scan().table_name(&table).into_paginator().items().send();
    let mut groups = 0;
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        if item["kind"].as_s().unwrap() != schema::AggregatesKind::Aggregate.as_str() {
            continue;
        }
        let a = schema::AggregateItem::from_item(item).unwrap();
        groups += 1;
        let k = (
            a.dataset.clone(),
            a.aggregate.clone(),
            serde_json::to_string(&a.group).unwrap(),
        );
        let (version, values) = latest.get(&k).unwrap_or_else(|| panic!("{k:?} never announced"));
        assert_eq!(a.version, *version);
        assert_eq!(&a.measures, values, "{k:?}");
    }
    assert_eq!(groups, latest.len());
}

/// A crash after the aggregates are written and before the feed is sent: the
/// retried batch writes nothing and announces the same changes, with the
/// same ids as a run without the crash.
#[tokio::test]
async fn no_change_goes_unannounced_after_a_crash_before_the_send() {
    let s = setup(&["orders/bad-lines.csv"]).await;
    let all = batches(&s.env, 1000).await.concat();

    s.fail.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let (response, report) = handle_batch(&s.projector, &s.failing_feed, event(&all)).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier, all[0].change.sequence_number,
        "retry from the start"
    );
    assert!(report.outcome.applied > 0 && report.sent.messages == 0);
    assert!(consume(&s).await.is_empty());

    s.fail.0.store(false, std::sync::atomic::Ordering::SeqCst);
    let (response, retry) = handle_batch(&s.projector, &s.failing_feed, event(&all)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (retry.outcome.applied, retry.outcome.writes),
        (0, 0),
        "the replay writes nothing"
    );
    let first_ids: Vec<&str> = report.messages.iter().map(FeedMessage::id).collect();
    let retry_ids: Vec<&str> = retry.messages.iter().map(FeedMessage::id).collect();
    assert_eq!(first_ids, retry_ids, "the same changes, the same ids");
    let received = consume(&s).await;
    assert_eq!(received.len(), retry_ids.len());

    // Delivered yet again (Lambda's at-least-once): duplicates carry the same ids.
    let (_, again) = handle_batch(&s.projector, &s.feed, event(&all)).await;
    let again_ids: Vec<&str> = again.messages.iter().map(FeedMessage::id).collect();
    assert_eq!(again_ids, retry_ids);
}
