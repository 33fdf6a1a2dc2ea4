//! The resources the pipeline needs, created on the local stack with the
//! settings the deployment uses.

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType,
};

/// Names of the deployed resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The upload bucket.
    pub bucket: String,
    /// The events table.
    pub events_table: String,
    /// The aggregates table (the projector's; no stream, so projector writes
    /// never reach the events stream).
    pub aggregates_table: String,
    /// The feed queue downstream services consume.
    pub feed_queue: String,
    /// Its dead-letter queue.
    pub feed_dlq: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            bucket: "csv-pipeline-uploads".into(),
            events_table: "csv-pipeline-events".into(),
            aggregates_table: "csv-pipeline-aggregates".into(),
            feed_queue: "csv-pipeline-feed".into(),
            feed_dlq: "csv-pipeline-feed-dlq".into(),
        }
    }
}

fn attr(name: &str, ty: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, ty: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(ty)
        .build()
        .expect("name and type are set")
}

/// Create the events table (pk S, sk N, on-demand, stream `NEW_IMAGE`) unless it exists.
pub async fn ensure_events_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    if ddb.describe_table().table_name(name).send().await.is_ok() {
        return Ok(());
    }
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(attr(schema::keys::PK, ScalarAttributeType::S))
        .attribute_definitions(attr(schema::keys::SK, ScalarAttributeType::N))
        .key_schema(key(schema::keys::PK, KeyType::Hash))
        .key_schema(key(schema::keys::SK, KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .expect("enabled is set"),
        )
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    Ok(())
}

/// Create the aggregates table (pk S, on-demand) unless it exists.
pub async fn ensure_aggregates_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> Result<()> {
    if ddb.describe_table().table_name(name).send().await.is_ok() {
        return Ok(());
    }
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("creating table {name}"))?;
    Ok(())
}

/// Create the bucket unless it exists.
pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<()> {
    if s3.head_bucket().bucket(name).send().await.is_ok() {
        return Ok(());
    }
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .with_context(|| format!("creating bucket {name}"))?;
    Ok(())
}

/// Receives before a feed message moves to the dead-letter queue.
pub const FEED_MAX_RECEIVE_COUNT: u32 = 5;

/// Create a queue and its dead-letter queue (redrive after `max_receive`
/// receives) unless they exist; returns the queue's URL.
pub async fn ensure_queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq: &str,
    max_receive: u32,
) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq_url = sqs
        .create_queue()
        .queue_name(dlq)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .with_context(|| format!("creating queue {dlq}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("no ARN for the dead-letter queue")?;
    let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive}"}}"#);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    Ok(url)
}
