//! The SQS emulator through the real `aws-sdk-sqs` client over HTTP: the
//! operations the pipeline and its consumers use, the errors as the SDK's
//! typed variants, redrive, long polls, and the store surviving a restart.

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName as A, SendMessageBatchRequestEntry,
};
use localstack::{LocalStack, Ports, State};

async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, attrs: &[(A, &str)]) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send().await.unwrap().queue_url.unwrap()
}

fn entry(id: &str, body: &str) -> SendMessageBatchRequestEntry {
    SendMessageBatchRequestEntry::builder()
        .id(id)
        .message_body(body)
        .build()
        .unwrap()
}

#[tokio::test]
async fn messages_attributes_and_md5s_round_trip() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let sqs = stack.clients().sqs;
    let url = queue(&sqs, "feed", &[]).await;
    let by_name = sqs.get_queue_url().queue_name("feed").send().await.unwrap();
    assert_eq!(by_name.queue_url(), Some(url.as_str()));
    let listed = sqs.list_queues().queue_name_prefix("fe").send().await.unwrap();
    assert_eq!(listed.queue_urls(), std::slice::from_ref(&url));

    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .unwrap()
    };
    let body = "{\"type\":\"aggregate.changed\"} é ✓";
    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body(body)
        .message_attributes("type", attr("aggregate.changed"))
        .message_attributes("dataset", attr("orders"))
        .send()
        .await
        .unwrap();
    let body_md5 = format!("{:x}", md5::compute(body));
    assert_eq!(sent.md5_of_message_body(), Some(body_md5.as_str()));
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("type")
        .send()
        .await
        .unwrap();
    let m = &got.messages()[0];
    assert_eq!(m.message_id(), sent.message_id());
    assert_eq!((m.body(), m.md5_of_body()), (Some(body), Some(body_md5.as_str())));
    let system = m.attributes().unwrap();
    assert_eq!(system[&MessageSystemAttributeName::ApproximateReceiveCount], "1");
    assert!(system.contains_key(&MessageSystemAttributeName::SentTimestamp));
    // Only the attribute asked for, with the digest of just that one.
    let attrs = m.message_attributes().unwrap();
    assert_eq!(attrs.keys().collect::<Vec<_>>(), ["type"]);
    assert_eq!(attrs["type"].string_value(), Some("aggregate.changed"));
    assert!(m.md5_of_message_attributes().is_some());
    assert_ne!(m.md5_of_message_attributes(), sent.md5_of_message_attributes());

    let depth = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::All)
        .send()
        .await
        .unwrap();
    let a = depth.attributes().unwrap();
    assert_eq!(a[&A::ApproximateNumberOfMessagesNotVisible], "1");
    assert_eq!(a[&A::QueueArn], "arn:aws:sqs:us-east-1:000000000000:feed");
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let after = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert!(after.messages().is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn errors_reach_the_sdk_as_its_typed_errors() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let sqs = stack.clients().sqs;
    let url = queue(&sqs, "q", &[(A::VisibilityTimeout, "10")]).await;

    let e = sqs.get_queue_url().queue_name("nope").send().await.unwrap_err();
    assert!(e.into_service_error().is_queue_does_not_exist());
    let e = sqs
        .create_queue()
        .queue_name("q")
        .attributes(A::VisibilityTimeout, "11")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_queue_name_exists());
    let e = sqs
        .delete_message()
        .queue_url(&url)
        .receipt_handle("forged")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_receipt_handle_is_invalid());
    let eleven: Vec<_> = (0..11).map(|i| entry(&i.to_string(), "x")).collect();
    let e = sqs
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(eleven))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_too_many_entries_in_batch_request());
    let e = sqs
        .send_message()
        .queue_url(&url)
        .message_body("\u{1}")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_message_contents());
    let e = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(11)
        .send()
        .await
        .unwrap_err();
    match e {
        SdkError::ServiceError(s) => assert_eq!(s.err().meta().code(), Some("InvalidParameterValue")),
        other => panic!("not a service error: {other:?}"),
    }
    // A batch with one bad entry: the rest are sent, the bad one reported.
    let bad = SendMessageBatchRequestEntry::builder()
        .id("bad")
        .message_body("x")
        .delay_seconds(901)
        .build()
        .unwrap();
    let out = sqs
        .send_message_batch()
        .queue_url(&url)
        .entries(entry("good", "ok"))
        .entries(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(out.successful().iter().map(|s| s.id()).collect::<Vec<_>>(), ["good"]);
    assert_eq!(
        out.failed()
            .iter()
            .map(|f| (f.id(), f.code(), f.sender_fault()))
            .collect::<Vec<_>>(),
        [("bad", "InvalidParameterValue", true)]
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_message_failed_on_every_receive_moves_after_exactly_max_receives() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let sqs = stack.clients().sqs;
    let dlq = queue(&sqs, "dlq", &[]).await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":4}"#;
    let url = queue(&sqs, "work", &[(A::RedrivePolicy, policy)]).await;
    sqs.send_message()
        .queue_url(&url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    let mut counts = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .visibility_timeout(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap();
        let Some(m) = got.messages().first() else { break };
        counts.push(m.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount].clone());
        assert!(counts.len() < 10, "never moved");
    }
    assert_eq!(counts, ["1", "2", "3", "4"]);
    let dead = sqs.receive_message().queue_url(&dlq).send().await.unwrap();
    assert_eq!(dead.messages()[0].body(), Some("poison"));
    stack.stop().await;
}

#[tokio::test]
async fn a_long_poll_returns_what_is_sent_while_it_waits() {
    let stack = LocalStack::start(State::Memory, Ports::default()).await.unwrap();
    let sqs = stack.clients().sqs;
    let url = queue(&sqs, "q", &[]).await;
    let poll = tokio::spawn({
        let (sqs, url) = (sqs.clone(), url.clone());
        async move { sqs.receive_message().queue_url(&url).wait_time_seconds(20).send().await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    sqs.send_message()
        .queue_url(&url)
        .message_body("late")
        .send()
        .await
        .unwrap();
    let got = poll.await.unwrap().unwrap();
    assert_eq!(got.messages()[0].body(), Some("late"));
    stack.stop().await;
}

#[tokio::test]
async fn queues_and_messages_survive_a_restart_and_in_flight_ones_can_be_released() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::Dir(dir.path().to_path_buf());
    {
        let stack = LocalStack::start(state.clone(), Ports::default()).await.unwrap();
        let sqs = stack.clients().sqs;
        let url = queue(&sqs, "q", &[(A::VisibilityTimeout, "3600")]).await;
        for body in ["a", "b"] {
            sqs.send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        let got = sqs.receive_message().queue_url(&url).send().await.unwrap();
        assert_eq!(got.messages().len(), 1);
        stack.stop().await;
    }
    let stack = LocalStack::start(state, Ports::default()).await.unwrap();
    let sqs = stack.clients().sqs;
    let url = sqs
        .get_queue_url()
        .queue_name("q")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let depth = stack.sqs().depth(&url).unwrap();
    assert_eq!((depth.visible, depth.in_flight), (1, 1), "the receive is remembered");
    assert_eq!(stack.sqs().release_in_flight(&url).unwrap(), ["a"]);
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
    bodies.sort();
    assert_eq!(bodies, ["a", "b"]);
    stack.stop().await;
}
