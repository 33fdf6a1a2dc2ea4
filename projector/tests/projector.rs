//! The projector on the local stack: stream records from the emulator's real
//! `GetRecords`, aggregates written through the real SDK, replays of every
//! kind Lambda can do.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;
use common::{data, env, Env};
use localstack::clients::shared;
use localstack::resources;
use localstack::testing::{fail_transactions, oracle, Cancelled, FailAfter, Folded, LoseReplies, Pause};
use projector::fold::FILE_STATS;
use projector::project::Projector;
use rust_decimal::Decimal;
use schema::Registry;
use schema::{AggregateItem, AggregatesKind};

/// Aggregate pk -> measures, read back from the aggregates table.
type Table = BTreeMap<String, BTreeMap<String, String>>;

async fn projector_on(env: &Env, fault: Option<FailAfter>) -> Projector {
    let table = env.names.aggregates_table.clone();
    resources::ensure_aggregates_table(&env.ddb, &table).await.unwrap();
    let ddb = match fault {
        Some(f) => env.stack.clients_with(&[shared(f)]).dynamodb,
        None => env.stack.clients().dynamodb,
    };
    Projector::new(ddb, table, &Registry::builtin())
}

async fn aggregates(env: &Env, table: &str) -> Table {
    let mut out = Table::new();
    let mut items = env.ddb.scan().table_name(table).into_paginator().items().send();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        if item.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) != Some(AggregatesKind::Aggregate.as_str())
        {
            continue;
        }
        let a = AggregateItem::from_item(item).unwrap();
        out.insert(a.pk, a.measures);
    }
    out
}

/// The aggregates table's key of an `orders` group.
fn pk(aggregate: &str, values: &[String]) -> String {
    schema::keys::group_pk("orders", aggregate, values)
}

const DATA: &[&str] = &[
    "orders/2024-q1-webshop.csv",
    "orders/2024-q1-marketplace.csv",
    "orders/2024-q1-retail.csv",
    "orders/bad-lines.csv",
    "orders/header-only.csv",
    "orders/empty.csv",
    "orders/bad-header-missing-columns.csv",
    "orders/bad-header-unknown-column.csv",
    "shops/stores.csv",
];

/// Every typed aggregate of `table` equals the independent fold, group for
/// group and measure for measure.
fn assert_equals_oracle(got: &Table, want: &Folded, what: &str) {
    let typed: BTreeMap<&String, &BTreeMap<String, String>> = got
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&schema::keys::group_pk_prefix("orders", None))
                && !k.starts_with(&schema::keys::group_pk_prefix("orders", Some(FILE_STATS)))
        })
        .collect();
    assert_eq!(typed.len(), want.len(), "{what}: one aggregate item per group");
    for ((agg, values), measures) in want {
        let m = got
            .get(&pk(agg, values))
            .unwrap_or_else(|| panic!("{what}: missing {agg} {values:?}"));
        let live: BTreeMap<String, Decimal> = m
            .iter()
            .map(|(k, v)| (k.clone(), Decimal::from_str(v).unwrap()))
            .collect();
        assert_eq!(&live, measures, "{what}: {agg} {values:?}");
    }
}

/// `data/` projected at several batch sizes (one transaction per event, some
/// per batch, many per batch), each into its own table: every one equals the
/// independent fold.
#[tokio::test]
async fn data_dir_aggregates_equal_an_independent_fold() {
    let env = env().await;
    env.ingest_all(DATA).await;
    let want = oracle(DATA);
    // Every line of data/, accepted or rejected, is one event.
    let expected: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&data("expected.json")).unwrap();
    let lines: u64 = expected.values().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert!(want.len() > 500, "the fold covers data/: {} groups", want.len());
    let mut got = Table::new();
    let mut completed = Vec::new();
    for size in [1, 100, 1000] {
        let table = format!("aggregates-batch-{size}");
        resources::ensure_aggregates_table(&env.ddb, &table).await.unwrap();
        let projector = Projector::new(env.stack.clients().dynamodb, table.clone(), &Registry::builtin());
        let (mut events, mut writes) = (0, 0);
        for b in env.stream_batches(size).await {
            let out = projector.project(&b).await.unwrap();
            events += out.applied;
            writes += out.writes;
            assert_eq!(out.skipped, 0);
            if size == 1000 {
                completed.extend(out.completed.into_iter().map(|m| m.file_id));
            }
        }
        assert_eq!(events, lines, "batch size {size}: every line is folded once");
        println!(
            "writes per event at batch size {size}: {:.3}",
            writes as f64 / events as f64
        );
        got = aggregates(&env, &table).await;
        assert_equals_oracle(&got, &want, &format!("batch size {size}"));
    }
    // Per-file statistics: accepted and rejected lines of each file.
    let expected: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&data("expected.json")).unwrap();
    for (key, want) in &expected {
        let id = schema::keys::file_id_of(&data(key));
        let ds = if key.starts_with("orders/") {
            "orders"
        } else {
            "untyped"
        };
        let stats = got.get(&schema::keys::group_pk(ds, FILE_STATS, &[&id]));
        match stats {
            None => assert_eq!(want["rows"], 0, "{key} has lines but no statistics"),
            Some(s) => {
                assert_eq!(s["accepted"], want["accepted"].to_string(), "{key}");
                assert_eq!(s["rejected"], want["rejected"].to_string(), "{key}");
                assert!(s["first_seen"] <= s["last_seen"]);
            }
        }
    }
    // Every file's manifest reached a final status on the stream.
    for key in DATA {
        assert!(
            completed.contains(&schema::keys::file_id_of(&data(key))),
            "{key} completed"
        );
    }
}

const FILES: &[&str] = &["orders/2024-q1-marketplace.csv", "orders/bad-lines.csv"];

/// Same batch twice, a crash between transactions then the retry, bisected
/// halves, and an old batch after newer ones: the aggregates come out equal
/// to a clean projection every time.
#[tokio::test]
async fn replays_of_every_kind_stay_exact() {
    let env = env().await;
    env.ingest_all(FILES).await;
    // Batches of 250 lines span several transactions (at most 100 items each).
    let batches = env.stream_batches(250).await;
    assert!(batches.len() >= 4, "{} batches", batches.len());

    // The clean projection, into its own table.
    let clean_table = "clean-aggregates";
    resources::ensure_aggregates_table(&env.ddb, clean_table).await.unwrap();
    let clean = Projector::new(env.stack.clients().dynamodb, clean_table, &Registry::builtin());
    for b in &batches {
        clean.project(b).await.unwrap();
    }
    let want = aggregates(&env, clean_table).await;
    assert_equals_oracle(&want, &oracle(FILES), "batch size 250");

    let fault = fail_transactions();
    let p = projector_on(&env, Some(fault.clone())).await;
    // 1. The same batch twice.
    let first = p.project(&batches[0]).await.unwrap();
    let again = p.project(&batches[0]).await.unwrap();
    assert_eq!((again.applied, again.writes), (0, 0), "a replay writes nothing");
    assert_eq!(again.skipped, first.applied);
    assert!(!again.changes.is_empty(), "a replay re-announces the groups it touches");
    // 2. A crash after the first transaction of a batch, then the whole batch again.
    fault.arm(1);
    let err = p.project(&batches[1]).await.unwrap_err();
    assert!(err.message().contains("injected failure"), "{err}");
    assert!(
        err.done.transactions == 1 && err.failed_at > 0,
        "part of the batch was applied: {err}"
    );
    fault.disarm();
    let retry = p.project(&batches[1]).await.unwrap();
    assert!(retry.skipped > 0 && retry.applied > 0, "{retry:?}");
    // 3. Bisected: the halves of a batch, after the whole failed.
    fault.arm(0);
    assert!(p.project(&batches[2]).await.is_err());
    fault.disarm();
    let (a, b) = batches[2].split_at(batches[2].len() / 2);
    p.project(a).await.unwrap();
    p.project(b).await.unwrap();
    p.project(&batches[2]).await.unwrap();
    // 4. The rest, then old batches again after newer ones.
    for b in &batches[3..] {
        p.project(b).await.unwrap();
    }
    for b in batches.iter().take(3).rev() {
        let o = p.project(b).await.unwrap();
        assert_eq!(o.applied, 0);
    }
    let got = aggregates(&env, &env.names.aggregates_table).await;
    assert_eq!(got, want, "exactly as if each event had been applied once");
}

/// Records that cannot be projected stop the batch at their index, with a
/// reason; what came before is applied, nothing after.
#[tokio::test]
async fn bad_stream_records_are_batch_item_failures() {
    let env = env().await;
    env.ingest_all(&["orders/bad-lines.csv"]).await;
    let batches = env.stream_batches(1000).await;
    let records: Vec<EventRecord> = batches.concat();
    let is_event = |r: &EventRecord| {
        r.change
            .new_image
            .get("kind")
            .and_then(|k| serde_dynamo::from_attribute_value::<_, String>(k.clone()).ok())
            == Some("event".to_owned())
    };
    let good = records.iter().position(is_event).unwrap();

    let mut no_kind = records[good].clone();
    no_kind.change.new_image = serde_dynamo::Item::from(std::collections::HashMap::<String, AttributeValue>::new());
    no_kind.change.sequence_number = Some("999".into());
    let mut unknown = records[good].clone();
    let mut img: std::collections::HashMap<String, AttributeValue> = unknown.change.new_image.clone().into();
    img.insert("dataset".into(), AttributeValue::S("no_such_dataset".into()));
    unknown.change.new_image = serde_dynamo::Item::from(img);

    let p = projector_on(&env, None).await;
    for (bad, want) in [
        (no_kind, "has no `kind`"),
        (unknown, "unknown dataset \"no_such_dataset\""),
    ] {
        let at = 3;
        let mut batch = records[..at].to_vec();
        batch.push(bad);
        batch.extend(records[at..].iter().cloned());
        let err = p.project(&batch).await.unwrap_err();
        assert_eq!(err.failed_at, at, "{err}");
        assert!(err.message().contains(want), "{err}");
    }
}

/// A projection into a fresh table of `FILES`' batches, done cleanly.
async fn clean_projection(env: &Env, batches: &[Vec<EventRecord>], table: &str) -> Table {
    resources::ensure_aggregates_table(&env.ddb, table).await.unwrap();
    let clean = Projector::new(env.stack.clients().dynamodb, table, &Registry::builtin());
    for b in batches {
        clean.project(b).await.unwrap();
    }
    aggregates(env, table).await
}

/// The faults that commit part of the work before failing: a transaction
/// whose reply is lost after it committed, then the batch retried; a batch cut
/// after its first transaction, then bisected into halves (as Lambda does)
/// and retried whole. Each ends exactly as a clean projection.
#[tokio::test]
async fn lost_replies_and_bisection_after_a_partial_commit_stay_exact() {
    let env = env().await;
    env.ingest_all(FILES).await;
    let batches = env.stream_batches(250).await;
    let want = clean_projection(&env, &batches, "clean-aggregates").await;

    let lose = LoseReplies::disarmed();
    let cut = fail_transactions();
    resources::ensure_aggregates_table(&env.ddb, &env.names.aggregates_table)
        .await
        .unwrap();
    let (l, c) = (lose.clone(), cut.clone());
    let ddb = env.stack.clients_with(&[shared(l), shared(c)]).dynamodb;
    let p = Projector::new(ddb, env.names.aggregates_table.clone(), &Registry::builtin());

    // 1. The second transaction of a batch commits, and its reply is lost.
    lose.arm(1);
    let err = p.project(&batches[0]).await.unwrap_err();
    assert!(
        err.message().contains("reply to a committed transaction was lost"),
        "{err}"
    );
    assert_eq!(lose.lost.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(err.done.transactions, 1, "the first transaction is counted done: {err}");
    // Lambda retries from the first record not done: the committed work is
    // found applied (its bitmaps), the rest is folded once.
    let retry = p.project(&batches[0][err.failed_at..]).await.unwrap();
    assert!(retry.skipped > 0 && retry.applied > 0, "{retry:?}");
    let whole = p.project(&batches[0]).await.unwrap();
    assert_eq!((whole.applied, whole.writes), (0, 0), "{whole:?}");

    // 2. A batch whose first transaction commits and whose second fails;
    // Lambda bisects: each half, then the whole batch again.
    cut.arm(1);
    let err = p.project(&batches[1]).await.unwrap_err();
    assert!(err.done.transactions == 1 && err.failed_at > 0, "{err}");
    cut.disarm();
    let (a, b) = batches[1].split_at(batches[1].len() / 2);
    let first_half = p.project(a).await.unwrap();
    assert!(
        first_half.skipped > 0,
        "the committed part is found applied: {first_half:?}"
    );
    p.project(b).await.unwrap();
    assert_eq!(p.project(&batches[1]).await.unwrap().applied, 0);

    for b in &batches[2..] {
        p.project(b).await.unwrap();
    }
    let got = aggregates(&env, &env.names.aggregates_table).await;
    assert_eq!(got, want, "exactly as if each event had been applied once");
    assert_equals_oracle(&got, &oracle(FILES), "after lost replies and bisection");
}

/// Two projectors on the same groups at once (Lambda runs up to ten batches
/// of a shard in parallel, and a retry can overlap a slow invocation). First
/// forced: one has read the groups and built its transaction when the other
/// commits the same events, so its transaction is cancelled by the version
/// conditions and it must read again and find them applied. Then both free
/// over every batch at once. Both end exactly as a clean projection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projectors_on_the_same_groups_stay_exact() {
    let env = env().await;
    env.ingest_all(FILES).await;
    let batches = env.stream_batches(250).await;
    let want = clean_projection(&env, &batches, "clean-aggregates").await;
    let table = env.names.aggregates_table.clone();
    resources::ensure_aggregates_table(&env.ddb, &table).await.unwrap();

    let (pause, cancelled) = (Pause::default(), Cancelled::default());
    let (pa, ca) = (pause.clone(), cancelled.clone());
    let slow = Projector::new(
        env.stack.clients_with(&[shared(pa), shared(ca)]).dynamodb,
        table.clone(),
        &Registry::builtin(),
    );
    let fast = Projector::new(env.stack.clients().dynamodb, table.clone(), &Registry::builtin());

    pause.arm();
    let batch = batches[0].clone();
    let held = tokio::spawn({
        let slow = slow.clone();
        async move { slow.project(&batch).await }
    });
    while !pause.reached() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let first = fast.project(&batches[0]).await.unwrap();
    pause.release();
    let late = held.await.unwrap().unwrap();
    assert!(
        cancelled.0.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the late transaction was cancelled by its conditions"
    );
    assert_eq!(
        (late.applied, late.skipped),
        (0, first.applied),
        "the late projector found every event applied, none folded twice"
    );

    // Free-running: both over every batch, in opposite orders, at once.
    let forward = {
        let (p, bs) = (slow.clone(), batches.clone());
        tokio::spawn(async move {
            for b in &bs {
                p.project(b).await.unwrap();
            }
        })
    };
    let backward = {
        let (p, bs) = (fast.clone(), batches.clone());
        tokio::spawn(async move {
            for b in bs.iter().rev() {
                p.project(b).await.unwrap();
            }
        })
    };
    forward.await.unwrap();
    backward.await.unwrap();
    let got = aggregates(&env, &table).await;
    assert_eq!(got, want, "exactly as if each event had been applied once");
}
