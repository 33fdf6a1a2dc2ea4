//! The projector on the local stack: stream records from the emulator's real
//! `GetRecords`, aggregates written through the real SDK, replays of every
//! kind Lambda can do.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue;
use common::{batch, data, env, fail_transactions, notification, oracle, Env, FailAfter};
use ingest::handler;
use pipeline::resources;
use pipeline::streams::StreamReader;
use projector::project::Projector;
use rust_decimal::Decimal;
use schema::Registry;

/// Aggregate pk -> measures, read back from the aggregates table.
type Table = BTreeMap<String, BTreeMap<String, String>>;

async fn projector_on(env: &Env, fault: Option<FailAfter>) -> Projector {
    let table = env.names.aggregates_table.clone();
    resources::ensure_aggregates_table(&env.ddb, &table).await.unwrap();
    let ddb = match fault {
        Some(f) => env.stack.dynamodb_with(|b| b.interceptor(f)),
        None => env.stack.dynamodb(),
    };
    Projector::new(ddb, table, &Registry::builtin())
}

async fn stream_batches(env: &Env, limit: i32) -> Vec<Vec<EventRecord>> {
    let mut r = StreamReader::open(&env.ddb, env.stack.dynamodb_streams(), &env.names.events_table)
        .await
        .unwrap();
    r.drain(limit).await.unwrap()
}

async fn aggregates(env: &Env, table: &str) -> Table {
    let mut out = Table::new();
    let mut start = None;
    loop {
        let page = env
            .ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            if item.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) != Some("aggregate") {
                continue;
            }
            let pk = item["pk"].as_s().unwrap().clone();
            let m = item["measures"].as_m().unwrap();
            out.insert(
                pk,
                m.iter().map(|(k, v)| (k.clone(), v.as_s().unwrap().clone())).collect(),
            );
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return out;
        }
    }
}

async fn ingest_all(env: &Env, keys: &[&str]) {
    let mut messages = Vec::new();
    for key in keys {
        env.put(key, &data(key)).await;
        messages.push(notification(&format!("m-{key}"), env.bucket(), key));
    }
    for chunk in messages.chunks(10) {
        let r = handler::handle_batch(&env.ingester, batch(chunk.to_vec()), None).await;
        assert!(r.batch_item_failures.is_empty());
    }
}

/// The oracle: the `orders` aggregates computed straight from the CSV files
/// with the csv crate and rust_decimal, by rules written out here.
fn pk(aggregate: &str, values: &[String]) -> String {
    format!("G#orders#{aggregate}#{}", serde_json::to_string(values).unwrap())
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

#[tokio::test]
async fn data_dir_aggregates_equal_an_independent_fold() {
    let env = env().await;
    ingest_all(&env, DATA).await;
    let projector = projector_on(&env, None).await;
    let mut events = 0;
    let mut writes = 0;
    let mut completed = Vec::new();
    for b in stream_batches(&env, 1000).await {
        let out = projector.project(&b).await.unwrap();
        events += out.applied;
        writes += out.writes;
        completed.extend(out.completed.into_iter().map(|m| m.file_id));
        assert_eq!(out.skipped, 0);
    }
    assert_eq!(events, 4518, "every line is folded once");
    println!(
        "writes per event at batch size 1000: {:.3}",
        writes as f64 / events as f64
    );

    let got = aggregates(&env, &env.names.aggregates_table).await;
    let want = oracle(DATA);
    let orders: BTreeMap<&String, &BTreeMap<String, String>> = got
        .iter()
        .filter(|(k, _)| k.starts_with("G#orders#") && !k.contains("#file_stats#"))
        .collect();
    assert_eq!(orders.len(), want.len(), "one aggregate item per group");
    for ((agg, values), v) in &want {
        let m = got
            .get(&pk(agg, values))
            .unwrap_or_else(|| panic!("missing {agg} {values:?}"));
        let num = |name: &str| Decimal::from_str(&m[name]).unwrap();
        if agg == "units_by_category" {
            assert_eq!(
                [num("lines"), num("units"), num("min_unit_price"), num("max_unit_price")],
                v[..],
                "{values:?}"
            );
        } else {
            assert_eq!([num("lines"), num("units"), num("revenue")], v[..], "{values:?}");
        }
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
        let stats = got.get(&format!("G#{ds}#file_stats#{}", serde_json::to_string(&[&id]).unwrap()));
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

/// Same batch twice, a crash between transactions then the retry, bisected
/// halves, and an old batch after newer ones: the aggregates come out equal
/// to a clean projection every time.
#[tokio::test]
async fn replays_of_every_kind_stay_exact() {
    let env = env().await;
    ingest_all(&env, &["orders/2024-q1-marketplace.csv", "orders/bad-lines.csv"]).await;
    // Batches of 250 lines span several transactions (at most 100 items each).
    let batches = stream_batches(&env, 250).await;
    assert!(batches.len() >= 4, "{} batches", batches.len());

    // The clean projection, into its own table.
    let clean_table = "clean-aggregates";
    resources::ensure_aggregates_table(&env.ddb, clean_table).await.unwrap();
    let clean = Projector::new(env.stack.dynamodb(), clean_table, &Registry::builtin());
    for b in &batches {
        clean.project(b).await.unwrap();
    }
    let want = aggregates(&env, clean_table).await;

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
    assert!(err.message.contains("injected failure"), "{err}");
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
    ingest_all(&env, &["orders/bad-lines.csv"]).await;
    let batches = stream_batches(&env, 1000).await;
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
        assert!(err.message.contains(want), "{err}");
    }
}
