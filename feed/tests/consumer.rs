//! The consumer kit on the local stack: the real ingester and projector fill
//! the feed queue through the real SDK; consumers read it back.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::dynamodb::Event;
use feed::{snapshot, Applied, Consumer, Delivery, DynamoReadModel, GroupKey, GroupState, Options, ReadModel, Stats};
use ingest::{handler as ingest_handler, Config, Ingester};
use localstack::clients::shared;
use localstack::resources::{self, Names};
use localstack::streams::StreamReader;
use localstack::testing::{batch, data, notification, sqs_record, FailSends, Pause};
use localstack::{LocalStack, Ports, State};
use projector::feed::Feed;
use projector::handler::handle_batch;
use projector::project::Projector;
use schema::Registry;

const FILES: &[&str] = &[
    "orders/2024-q1-marketplace.csv",
    "orders/bad-lines.csv",
    "shops/stores.csv",
];
const READ_MODEL: &str = "read-model";

struct Env {
    stack: LocalStack,
    names: Names,
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    feed_url: String,
    dlq_url: String,
    pause: Pause,
    projector: Projector,
    feed: Feed,
    /// The feed through an SQS client whose sends fail while `fail` is set.
    failing_feed: Feed,
    fail: FailSends,
    topic: String,
}

/// A stack with the pipeline's tables, a feed queue (dead-lettering after
/// `max_receive` receives), a read model table, and `FILES` ingested.
async fn env(max_receive: u32) -> Env {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let names = Names::local();
    let c = stack.clients();
    resources::ensure_events_table(&c.dynamodb, &names.events_table)
        .await
        .unwrap();
    resources::ensure_aggregates_table(&c.dynamodb, &names.aggregates_table)
        .await
        .unwrap();
    resources::ensure_aggregates_table(&c.dynamodb, READ_MODEL)
        .await
        .unwrap();
    resources::ensure_bucket(&c.s3, &names.bucket).await.unwrap();
    let feed_url = resources::ensure_queue_with_dlq(&c.sqs, &names.feed_queue, &names.feed_dlq, max_receive)
        .await
        .unwrap();
    let dlq_url = c
        .sqs
        .get_queue_url()
        .queue_name(&names.feed_dlq)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let ingester = Ingester::new(
        c.s3.clone(),
        c.dynamodb.clone(),
        Registry::builtin(),
        Config::new(&names.events_table),
    );
    let mut messages = Vec::new();
    for key in FILES {
        localstack::upload::upload_bytes(&c.s3, &names.bucket, key, data(key))
            .await
            .unwrap();
        messages.push(notification(&format!("m-{key}"), &names.bucket, key));
    }
    let r = ingest_handler::handle_batch(&ingester, batch(messages), None).await;
    assert!(r.batch_item_failures.is_empty());
    let pause = Pause::default();
    let projector = Projector::new(
        stack.clients_with(&[shared(pause.clone())]).dynamodb,
        names.aggregates_table.clone(),
        &Registry::builtin(),
    );
    let topic = resources::ensure_topic(&c.sns, &names.feed_topic).await.unwrap();
    let feed_arn = localstack::queues::queue_arn(&c.sqs, &feed_url).await.unwrap();
    resources::ensure_subscription(&c.sns, &topic, &feed_arn, None, None)
        .await
        .unwrap();
    let feed = Feed::new(c.sns.clone(), topic.clone());
    let fail = FailSends::default();
    let failing_feed = Feed::new(stack.clients_with(&[shared(fail.clone())]).sns, topic.clone());
    Env {
        ddb: c.dynamodb,
        sqs: c.sqs,
        stack,
        names,
        feed_url,
        dlq_url,
        pause,
        projector,
        feed,
        failing_feed,
        fail,
        topic,
    }
}

impl Env {
    /// The events table's stream in batches of `limit` records.
    async fn stream(&self, limit: i32) -> Vec<Event> {
        let mut r = StreamReader::open(&self.ddb, self.stack.clients().streams, &self.names.events_table)
            .await
            .unwrap();
        r.drain(limit)
            .await
            .unwrap()
            .into_iter()
            .map(|records| {
                let mut e = Event::default();
                e.records = records;
                e
            })
            .collect()
    }

    async fn project(&self, batches: Vec<Event>) {
        for b in batches {
            let (r, _) = handle_batch(&self.projector, &self.feed, b).await;
            assert!(r.batch_item_failures.is_empty());
        }
    }

    /// The aggregates table's groups.
    async fn aggregates(&self) -> ReadModel {
        snapshot(&self.ddb, &self.names.aggregates_table)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    fn options(&self) -> Options {
        Options {
            wait: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(1),
            extend_every: Duration::from_millis(300),
            stop_when_empty: true,
            ..Options::default()
        }
    }

    /// Messages visible and in flight on a queue.
    async fn depth(&self, url: &str) -> u64 {
        let d = self.stack.sqs().depth(url).unwrap();
        (d.visible + d.in_flight + d.delayed) as u64
    }

    /// Every body on the feed queue, received and deleted.
    async fn take_all(&self) -> Vec<String> {
        self.take(&self.feed_url).await
    }

    /// Every body on a queue, received and deleted.
    async fn take(&self, url: &str) -> Vec<String> {
        let all = localstack::queues::take_all(&self.sqs, url).await.unwrap();
        all.iter().map(|m| m.body().unwrap().to_owned()).collect()
    }

    async fn send_all(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.feed_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty());
        }
    }
}

fn groups(m: &ReadModel) -> BTreeMap<GroupKey, (u64, BTreeMap<String, String>)> {
    m.groups()
        .map(|g| (g.key.clone(), (g.version, g.values.clone())))
        .collect()
}

/// Counts of what the read model did, per message.
#[derive(Debug, Default)]
struct Tally {
    written: u64,
    stale: u64,
    files: u64,
}

#[tokio::test]
async fn a_duplicated_reordered_and_redelivered_feed_ends_equal_to_the_aggregates() {
    let e = env(5).await;
    e.project(e.stream(500).await).await;
    let bodies = e.take_all().await;
    assert!(bodies.len() > 100, "{} messages", bodies.len());
    // Each message twice, the second copy of every third one first, the whole reversed.
    let mut shuffled: Vec<String> = bodies.iter().rev().cloned().collect();
    for (i, b) in bodies.iter().enumerate() {
        if i % 3 == 0 {
            shuffled.insert(0, b.clone());
        } else {
            shuffled.push(b.clone());
        }
    }
    e.send_all(&shuffled).await;

    let model = DynamoReadModel::new(e.ddb.clone(), READ_MODEL);
    let mut tally = Tally::default();
    // Every seventh message fails the first time it is seen, so it comes back
    // after the visibility timeout (a redelivery).
    let failed_once = std::sync::Mutex::new(HashSet::new());
    let seen = AtomicU32::new(0);
    let mut stats = Stats::default();
    while e.depth(&e.feed_url).await > 0 {
        let s = Consumer::new(e.sqs.clone(), &e.feed_url, e.options())
            .run(
                async |d: Delivery| {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    if n.is_multiple_of(7) && failed_once.lock().unwrap().insert(d.sqs_message_id.clone()) {
                        return Err("failing the first delivery on purpose");
                    }
                    match GroupState::of_message(&d.message) {
                        Some(g) => match model.apply(&g).await.unwrap() {
                            Applied::Written => tally.written += 1,
                            Applied::Stale => tally.stale += 1,
                        },
                        None => tally.files += 1,
                    }
                    Ok(())
                },
                std::future::pending(),
            )
            .await
            .unwrap();
        stats.received += s.received;
        stats.handled += s.handled;
        stats.failed += s.failed;
        stats.poison += s.poison;
    }
    let redelivered = failed_once.lock().unwrap().len() as u64;
    assert!(redelivered > 10, "{redelivered} redelivered");
    assert_eq!(stats.failed, redelivered);
    assert_eq!(stats.handled, shuffled.len() as u64);
    assert_eq!(stats.received, shuffled.len() as u64 + redelivered);
    assert_eq!(stats.poison, 0);

    let read: ReadModel = model.groups().await.unwrap().into_iter().collect();
    let want = e.aggregates().await;
    assert_eq!(groups(&read), groups(&want));
    // A group is written at most once per version; every other copy was a
    // refused condition.
    let versions: u64 = want.groups().map(|g| g.version).sum();
    assert!(
        tally.written <= versions,
        "{} writes for {versions} versions",
        tally.written
    );
    assert_eq!(tally.written + tally.stale + tally.files, shuffled.len() as u64);
    assert!(tally.stale >= tally.written, "each change came twice: {tally:?}");
    println!(
        "read model: {} messages, {} writes, {} refused conditions: {:.3} writes per message",
        shuffled.len(),
        tally.written,
        tally.stale,
        tally.written as f64 / shuffled.len() as f64
    );
}

/// A consumer that starts late: its queue receives the feed from now on,
/// it snapshots the aggregates table while the projector is in the middle of
/// two batches, then follows. One batch has read its groups and not yet
/// written them (its changes are newer than the snapshot); the other has
/// written them and died before announcing them (its changes, announced by
/// the retry, are already in the snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_consumer_from_a_snapshot_taken_mid_batch_misses_nothing_and_applies_nothing_twice() {
    let e = Arc::new(env(5).await);
    let mut batches = e.stream(200).await;
    assert!(batches.len() >= 4, "{} batches", batches.len());
    let mut rest = batches.split_off(batches.len() / 2);
    let written_not_sent = rest.pop().unwrap();
    e.project(batches).await;
    // Messages sent before the consumer subscribed never reach its queue.
    e.take_all().await;

    e.fail.0.store(true, Ordering::SeqCst);
    let (r, _) = handle_batch(&e.projector, &e.failing_feed, written_not_sent.clone()).await;
    assert_eq!(r.batch_item_failures.len(), 1, "retried from its first record");

    e.pause.arm();
    let projecting = {
        let e = e.clone();
        tokio::spawn(async move { e.project(rest).await })
    };
    while !e.pause.reached() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The projector holds a transaction it has not sent: the snapshot reads
    // the groups before it.
    let snap = snapshot(&e.ddb, &e.names.aggregates_table).await.unwrap();
    let at_snapshot: BTreeMap<GroupKey, u64> = snap.iter().map(|g| (g.key.clone(), g.version)).collect();
    let mut model: ReadModel = snap.into_iter().collect();
    e.pause.release();
    projecting.await.unwrap();
    e.fail.0.store(false, Ordering::SeqCst);
    let (r, retry) = handle_batch(&e.projector, &e.failing_feed, written_not_sent).await;
    assert!(r.batch_item_failures.is_empty());
    assert!(!retry.messages.is_empty());

    let mut applied: HashSet<(GroupKey, u64)> = HashSet::new();
    let mut twice = 0;
    let mut stale = 0;
    let stats = Consumer::new(e.sqs.clone(), &e.feed_url, e.options())
        .run(
            async |d: Delivery| {
                if let Some(g) = GroupState::of_message(&d.message) {
                    let (key, version) = (g.key.clone(), g.version);
                    match model.apply(g) {
                        Applied::Written => {
                            assert!(version > at_snapshot.get(&key).copied().unwrap_or(0));
                            if !applied.insert((key, version)) {
                                twice += 1;
                            }
                        }
                        Applied::Stale => stale += 1,
                    }
                }
                Ok::<(), String>(())
            },
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(twice, 0);
    assert!(stats.handled > 0 && !applied.is_empty());
    assert!(stale > 0, "the retried batch's changes were in the snapshot");
    assert_eq!(groups(&model), groups(&e.aggregates().await));
    println!(
        "late consumer: {} applied after the snapshot, {stale} already held",
        applied.len()
    );
}

/// Poison messages come back until the receive limit, then go to the
/// dead-letter queue; the good messages around them are applied once.
#[tokio::test]
async fn poison_messages_are_reported_and_dead_lettered_and_the_rest_applied() {
    let e = env(2).await;
    e.project(e.stream(1000).await).await;
    let good = e.take_all().await;
    let v2 = good.iter().find(|b| b.contains("aggregate.changed")).unwrap();
    let poison = vec![
        "{not json".to_owned(),
        v2.replace("aggregate.changed", "aggregate.deleted"),
        v2.replace("\"schema_version\":2", "\"schema_version\":3"),
    ];
    let mut all = poison.clone();
    all.extend(good.iter().cloned());
    e.send_all(&all).await;

    let mut model = ReadModel::new();
    let mut stats = Stats::default();
    while e.depth(&e.feed_url).await > 0 {
        let s = Consumer::new(e.sqs.clone(), &e.feed_url, e.options())
            .run(
                async |d: Delivery| {
                    if let Some(g) = GroupState::of_message(&d.message) {
                        model.apply(g);
                    }
                    Ok::<(), String>(())
                },
                std::future::pending(),
            )
            .await
            .unwrap();
        stats.poison += s.poison;
        stats.handled += s.handled;
    }
    assert_eq!(stats.handled, good.len() as u64);
    // Received twice each (the queue's limit), the third receive moves them.
    assert_eq!(stats.poison, 2 * poison.len() as u64);
    let mut dead = e.take(&e.dlq_url).await;
    dead.sort();
    let mut want = poison.clone();
    want.sort();
    assert_eq!(dead, want);
    assert_eq!(groups(&model), groups(&e.aggregates().await));
}

/// The reference consumer Lambda's batch: poison reported by message id,
/// the rest applied; a batch with duplicates writes each group once.
#[tokio::test]
async fn the_lambda_batch_reports_only_poison_and_writes_each_group_once() {
    let e = env(5).await;
    e.project(e.stream(1000).await).await;
    let good = e.take_all().await;
    let model = DynamoReadModel::new(e.ddb.clone(), READ_MODEL);
    let mut reports = Vec::new();
    for (i, chunk) in good.chunks(10).enumerate() {
        let mut records: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(j, b)| sqs_record(&format!("{i}-{j}"), b))
            .collect();
        records.extend(chunk.iter().map(|b| sqs_record(&format!("{i}-dup"), b)).take(3));
        records.push(sqs_record(&format!("{i}-poison"), "{\"type\":\"nope\"}"));
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
        let (response, report) = feed::handler::handle_batch(&model, event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec![format!("{i}-poison")]);
        assert_eq!(report.poison, 1);
        assert_eq!(report.written + report.stale + report.superseded, report.changes);
        reports.push(report);
    }
    let read: ReadModel = model.groups().await.unwrap().into_iter().collect();
    assert_eq!(groups(&read), groups(&e.aggregates().await));
    // The same batches again (a redelivery): every write refused.
    for chunk in good.chunks(10) {
        let records: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(j, b)| sqs_record(&j.to_string(), b))
            .collect();
        let event = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
        let (response, report) = feed::handler::handle_batch(&model, event).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(report.written, 0);
    }
}

/// A handler slower than the visibility timeout: the batch's visibility is
/// extended, so the message is not handed out again while it runs.
#[tokio::test]
async fn a_slow_handler_keeps_its_messages_invisible() {
    let e = env(5).await;
    e.send_all(&["{\"type\":\"file.completed\"}".to_owned()]).await; // poison: not extended
    let good = r#"{"type":"aggregate.changed","schema_version":2,"id":"i","dataset":"orders","aggregate":"a","group":{},"values":{},"version":1,"changed_at":"t"}"#;
    e.send_all(&[good.to_owned()]).await;
    let mut handled = 0;
    let stats = Consumer::new(e.sqs.clone(), &e.feed_url, e.options())
        .run(
            async |_d: Delivery| {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                handled += 1;
                Ok::<(), String>(())
            },
            async {
                while e.depth(&e.feed_url).await > 1 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(handled, 1, "handed out once");
    assert!(stats.extensions >= 2, "{stats:?}");
    assert_eq!(stats.handled, 1);
}

/// Shutdown during a long poll returns at once with what was done.
#[tokio::test]
async fn shutdown_ends_a_long_poll() {
    let e = env(5).await;
    let opts = Options {
        wait: Duration::from_secs(20),
        ..Options::default()
    };
    let consumer = Consumer::new(e.sqs.clone(), &e.feed_url, opts);
    let run = consumer.run(
        async |_d: Delivery| Ok::<(), String>(()),
        tokio::time::sleep(Duration::from_millis(200)),
    );
    let stats = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stopped")
        .unwrap();
    assert_eq!(stats, Stats::default());
}

/// Fan-out: two subscribers of the feed topic with different filter policies
/// each receive exactly the messages their filter admits, while the feed
/// queue (no filter) receives every one.
#[tokio::test]
async fn two_subscribers_receive_exactly_what_their_filters_admit() {
    let e = env(5).await;
    let mut queues = Vec::new();
    for (name, policy) in [
        (
            "orders-changes",
            r#"{"type":["aggregate.changed"],"dataset":["orders"]}"#,
        ),
        // shops/ has no dataset definition: its file is read as `untyped`.
        (
            "other-files",
            r#"{"type":["file.completed"],"dataset":[{"anything-but":"orders"}]}"#,
        ),
    ] {
        let url = e
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let arn = localstack::queues::queue_arn(&e.sqs, &url).await.unwrap();
        resources::ensure_subscription(&e.stack.clients().sns, &e.topic, &arn, Some(policy), None)
            .await
            .unwrap();
        queues.push(url);
    }
    e.project(e.stream(1000).await).await;
    let everything = e.take_all().await;
    let parsed: Vec<feed::FeedMessage> = everything.iter().map(|b| feed::parse(b).unwrap()).collect();
    let mut want_changes: Vec<&str> = parsed
        .iter()
        .filter(|m| m.kind() == "aggregate.changed" && m.dataset() == "orders")
        .map(|m| m.id())
        .collect();
    let mut want_files: Vec<&str> = parsed
        .iter()
        .filter(|m| m.kind() == "file.completed" && m.dataset() != "orders")
        .map(|m| m.id())
        .collect();
    assert!(!want_changes.is_empty() && want_files.len() == 1);
    let files = parsed.iter().filter(|m| m.kind() == "file.completed").count();
    assert_eq!(
        files,
        FILES.len(),
        "the others' files are on the feed queue, not on the filtered one"
    );
    let mut got = Vec::new();
    for url in &queues {
        // Raw delivery: each body is the message as published.
        let mut ids: Vec<String> = e
            .take(url)
            .await
            .iter()
            .map(|b| feed::parse(b).unwrap().id().to_owned())
            .collect();
        ids.sort();
        got.push(ids);
    }
    want_changes.sort();
    want_files.sort();
    assert_eq!(got[0], want_changes);
    assert_eq!(got[1], want_files);
}
