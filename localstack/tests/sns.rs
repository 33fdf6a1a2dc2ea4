//! The SNS emulator through the real `aws-sdk-sns` client over HTTP (the
//! query protocol): topics, `sqs` subscriptions with raw delivery and filter
//! policies delivering into the local SQS, SNS's limits and errors as the
//! SDK's typed variants, and topics surviving a restart.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use localstack::{LocalStack, Ports, State};

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

fn entry(id: &str, body: &str, kind: &str, dataset: &str) -> PublishBatchRequestEntry {
    PublishBatchRequestEntry::builder()
        .id(id)
        .message(body)
        .message_attributes("type", attr(kind))
        .message_attributes("dataset", attr(dataset))
        .build()
        .unwrap()
}

struct Fan {
    stack: LocalStack,
    topic: String,
    all: String,
    changes: String,
    envelope: String,
}

/// A topic with three queues: everything raw, `aggregate.changed` of
/// `orders` raw, and everything in SNS's JSON envelope.
async fn fan(state: State) -> Fan {
    let stack = LocalStack::start(state, Ports::default()).await.unwrap();
    let c = stack.clients();
    let topic = c
        .sns
        .create_topic()
        .name("feed")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let mut urls = Vec::new();
    for (name, raw, policy) in [
        ("all", true, None),
        (
            "changes",
            true,
            Some(r#"{"type":["aggregate.changed"],"dataset":["orders"]}"#),
        ),
        ("envelope", false, None),
    ] {
        let url = c
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let mut sub = c
            .sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:us-east-1:000000000000:{name}"))
            .return_subscription_arn(true);
        if raw {
            sub = sub.attributes("RawMessageDelivery", "true");
        }
        if let Some(p) = policy {
            sub = sub.attributes("FilterPolicy", p);
        }
        sub.send().await.unwrap();
        urls.push(url);
    }
    let envelope = urls.pop().unwrap();
    let changes = urls.pop().unwrap();
    let all = urls.pop().unwrap();
    Fan {
        stack,
        topic,
        all,
        changes,
        envelope,
    }
}

async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    localstack::queues::take_all(sqs, url).await.unwrap()
}

#[tokio::test]
async fn each_subscription_gets_what_its_filter_admits() {
    let f = fan(State::Memory).await;
    let c = f.stack.clients();
    let kinds = [
        ("aggregate.changed", "orders"),
        ("aggregate.changed", "shops"),
        ("file.completed", "orders"),
    ];
    let entries: Vec<_> = (0..9)
        .map(|i| {
            let (k, d) = kinds[i % 3];
            entry(&format!("e{i}"), &format!("{{\"n\":{i}}}"), k, d)
        })
        .collect();
    let out = c
        .sns
        .publish_batch()
        .topic_arn(&f.topic)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().len(), 9);
    assert!(out.failed().is_empty());
    let single = c
        .sns
        .publish()
        .topic_arn(&f.topic)
        .message("{\"n\":9}")
        .message_attributes("type", attr("aggregate.changed"))
        .message_attributes("dataset", attr("orders"))
        .send()
        .await
        .unwrap();
    assert!(single.message_id().is_some());

    let all = drain(&c.sqs, &f.all).await;
    assert_eq!(all.len(), 10);
    let changes = drain(&c.sqs, &f.changes).await;
    let mut bodies: Vec<&str> = changes.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":3}", "{\"n\":6}", "{\"n\":9}"]);
    // Raw delivery carries the attributes over as SQS message attributes.
    let a = changes[0].message_attributes().unwrap();
    assert_eq!(a["type"].string_value(), Some("aggregate.changed"));
    assert_eq!(a["dataset"].data_type(), "String");
    assert!(changes[0].md5_of_message_attributes().is_some());

    let wrapped = drain(&c.sqs, &f.envelope).await;
    assert_eq!(wrapped.len(), 10);
    let env: serde_json::Value = serde_json::from_str(wrapped[0].body().unwrap()).unwrap();
    assert_eq!(env["Type"], "Notification");
    assert_eq!(env["TopicArn"], f.topic.as_str());
    assert!(env["Message"].as_str().unwrap().starts_with("{\"n\":"));
    assert_eq!(env["MessageAttributes"]["type"]["Type"], "String");
    assert!(wrapped[0].message_attributes().is_none());
}

#[tokio::test]
async fn topics_and_subscriptions_are_described_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let f = fan(State::Dir(dir.path().to_path_buf())).await;
    let c = f.stack.clients();
    let subs = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&f.topic)
        .send()
        .await
        .unwrap();
    assert_eq!(subs.subscriptions().len(), 3);
    let filtered = subs
        .subscriptions()
        .iter()
        .find(|s| s.endpoint().unwrap().ends_with(":changes"))
        .unwrap()
        .subscription_arn()
        .unwrap()
        .to_owned();
    let attrs = c
        .sns
        .get_subscription_attributes()
        .subscription_arn(&filtered)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    assert_eq!(attrs["RawMessageDelivery"], "true");
    assert_eq!(attrs["FilterPolicyScope"], "MessageAttributes");
    let t = c.sns.get_topic_attributes().topic_arn(&f.topic).send().await.unwrap();
    assert_eq!(t.attributes().unwrap()["SubscriptionsConfirmed"], "3");
    // The same subscription again is the same one; a different policy is refused.
    let again = c
        .sns
        .subscribe()
        .topic_arn(&f.topic)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-1:000000000000:changes")
        .attributes("RawMessageDelivery", "true")
        .attributes("FilterPolicy", r#"{"type":["aggregate.changed"],"dataset":["orders"]}"#)
        .return_subscription_arn(true)
        .send()
        .await
        .unwrap();
    assert_eq!(again.subscription_arn(), Some(filtered.as_str()));
    c.sns
        .set_subscription_attributes()
        .subscription_arn(&filtered)
        .attribute_name("FilterPolicy")
        .attribute_value(r#"{"dataset":["shops"]}"#)
        .send()
        .await
        .unwrap();
    f.stack.stop().await;

    let stack = LocalStack::start(State::Dir(dir.path().to_path_buf()), Ports::default())
        .await
        .unwrap();
    let c = stack.clients();
    let topics = c.sns.list_topics().send().await.unwrap();
    assert_eq!(topics.topics().len(), 1);
    c.sns
        .publish()
        .topic_arn(&f.topic)
        .message("x")
        .message_attributes("dataset", attr("shops"))
        .send()
        .await
        .unwrap();
    c.sns
        .publish()
        .topic_arn(&f.topic)
        .message("y")
        .message_attributes("dataset", attr("orders"))
        .send()
        .await
        .unwrap();
    let url = c
        .sqs
        .get_queue_url()
        .queue_name("changes")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let got = drain(&c.sqs, &url).await;
    assert_eq!(
        got.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(),
        ["x"],
        "the changed policy, kept"
    );
}

#[tokio::test]
async fn limits_and_errors_as_sns_gives_them() {
    let f = fan(State::Memory).await;
    let sns = f.stack.clients().sns;
    let e = sns
        .publish()
        .topic_arn("arn:aws:sns:us-east-1:000000000000:nope")
        .message("x")
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_not_found_exception(), "{e:?}");
    let eleven: Vec<_> = (0..11).map(|i| entry(&format!("e{i}"), "x", "t", "d")).collect();
    let e = sns
        .publish_batch()
        .topic_arn(&f.topic)
        .set_publish_batch_request_entries(Some(eleven))
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_too_many_entries_in_batch_request_exception(),
        "{e:?}"
    );
    let twins = vec![entry("a", "x", "t", "d"), entry("a", "y", "t", "d")];
    let e = sns
        .publish_batch()
        .topic_arn(&f.topic)
        .set_publish_batch_request_entries(Some(twins))
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error()
            .unwrap()
            .is_batch_entry_ids_not_distinct_exception(),
        "{e:?}"
    );
    let big = "x".repeat(200 * 1024);
    let two = vec![entry("a", &big, "t", "d"), entry("b", &big, "t", "d")];
    let e = sns
        .publish_batch()
        .topic_arn(&f.topic)
        .set_publish_batch_request_entries(Some(two))
        .send()
        .await
        .unwrap_err();
    assert!(
        e.as_service_error().unwrap().is_batch_request_too_long_exception(),
        "{e:?}"
    );
    let too_big = "x".repeat(256 * 1024 + 1);
    let e = sns
        .publish()
        .topic_arn(&f.topic)
        .message(too_big)
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_invalid_parameter_exception(), "{e:?}");
    let e = sns
        .subscribe()
        .topic_arn(&f.topic)
        .protocol("sqs")
        .endpoint("arn:aws:sqs:us-east-1:000000000000:all2")
        .attributes("FilterPolicy", r#"{"type":"aggregate.changed"}"#)
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_invalid_parameter_exception(), "{e:?}");
    // One bad entry fails alone.
    let mixed = vec![
        entry("good", "x", "t", "d"),
        PublishBatchRequestEntry::builder()
            .id("empty")
            .message("")
            .build()
            .unwrap(),
    ];
    let out = sns
        .publish_batch()
        .topic_arn(&f.topic)
        .set_publish_batch_request_entries(Some(mixed))
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().len(), 1);
    assert_eq!(out.failed()[0].id(), "empty");
    assert!(out.failed()[0].sender_fault());
}

#[tokio::test]
async fn a_delivery_to_a_deleted_queue_goes_to_the_subscription_dead_letter_queue() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let c = stack.clients();
    let topic = c
        .sns
        .create_topic()
        .name("feed")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let gone = c
        .sqs
        .create_queue()
        .queue_name("gone")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq = c
        .sqs
        .create_queue()
        .queue_name("gone-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    localstack::resources::ensure_subscription(
        &c.sns,
        &topic,
        "arn:aws:sqs:us-east-1:000000000000:gone",
        None,
        Some("arn:aws:sqs:us-east-1:000000000000:gone-dlq"),
    )
    .await
    .unwrap();
    c.sqs.delete_queue().queue_url(&gone).send().await.unwrap();
    c.sns.publish().topic_arn(&topic).message("kept").send().await.unwrap();
    let dead = drain(&c.sqs, &dlq).await;
    assert_eq!(dead.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["kept"]);

    // A JSON message structure needs its "default"; the "sqs" entry is what queues get.
    let e = c
        .sns
        .publish()
        .topic_arn(&topic)
        .message_structure("json")
        .message(r#"{"sqs":"x"}"#)
        .send()
        .await
        .unwrap_err();
    assert!(e.as_service_error().unwrap().is_invalid_parameter_exception(), "{e:?}");
}
