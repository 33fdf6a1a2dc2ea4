//! What the pollers, the resources, the benches and the tests read of a
//! queue: its ARN, its depth, everything on it.

use anyhow::{Context, Result};

/// A queue's ARN.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {url}"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("no ARN for {url}"))
}

/// Every message on a queue (with its message attributes), each deleted once
/// received, until a receive returns nothing: a consumer draining it.
pub async fn take_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receiving from {url}"))?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return Ok(out);
        }
        let entries = got
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let deleted = sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .with_context(|| format!("deleting from {url}"))?;
        anyhow::ensure!(
            deleted.failed().is_empty(),
            "{url} refused deletes: {:?}",
            deleted.failed()
        );
        out.extend(got);
    }
}

/// Messages on a queue, visible, delayed or in flight.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .with_context(|| format!("reading the depth of {url}"))?
        .attributes
        .unwrap_or_default();
    Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
}
