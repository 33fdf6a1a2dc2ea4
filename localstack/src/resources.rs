//! The resources the pipeline needs, created on the local stack with the
//! settings the deployment uses (`terraform/settings.json`), and found again
//! on a deployment by name.

use anyhow::{Context, Result};

use crate::clients::Clients;
use crate::settings::Settings;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType,
};

pub use crate::settings::Names;

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
    let s = Settings::get();
    ensure_queue(
        sqs,
        name,
        Some((dlq, max_receive)),
        s.feed.visibility_timeout_seconds,
        None,
        &s,
    )
    .await
}

/// Create a queue (with a dead-letter queue, kept `dlq_retention_seconds`,
/// and redrive if given) unless it exists, with server-side encryption and
/// the given retention (SQS's default if none); returns its URL.
pub async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq: Option<(&str, u32)>,
    visibility_timeout: u32,
    retention: Option<u32>,
    settings: &Settings,
) -> Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut req = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, visibility_timeout.to_string())
        .attributes(A::SqsManagedSseEnabled, "true");
    if let Some(r) = retention {
        req = req.attributes(A::MessageRetentionPeriod, r.to_string());
    }
    if let Some((dlq, max_receive)) = dlq {
        let dlq_url = Box::pin(ensure_queue(
            sqs,
            dlq,
            None,
            30,
            Some(settings.dlq_retention_seconds),
            settings,
        ))
        .await?;
        let dlq_arn = crate::queues::queue_arn(sqs, &dlq_url).await?;
        let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":{max_receive}}}"#);
        req = req.attributes(A::RedrivePolicy, redrive);
    }
    let url = req
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")?;
    Ok(url)
}

/// The queue URLs and topic of a deployment, found or created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deployment {
    /// Resource names.
    pub names: Names,
    /// The ingest queue (S3 notifications).
    pub ingest_queue_url: String,
    /// The feed topic the projector publishes to.
    pub feed_topic_arn: String,
    /// The feed queue (a raw subscriber of the topic).
    pub feed_queue_url: String,
    /// The stream mapping's on-failure queue.
    pub projector_failures_url: String,
    /// The reference consumer, if deployed.
    pub consumer: Option<ConsumerDeployment>,
}

/// The reference consumer's queue and read model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerDeployment {
    /// Its queue (a filtered, raw subscriber of the feed topic).
    pub queue_url: String,
    /// The queue's dead-letter queue.
    pub dlq_url: String,
    /// Its read model table.
    pub read_model_table: String,
}

/// Create the topic unless it exists; its ARN.
pub async fn ensure_topic(sns: &aws_sdk_sns::Client, name: &str) -> Result<String> {
    sns.create_topic()
        .name(name)
        .send()
        .await
        .with_context(|| format!("creating topic {name}"))?
        .topic_arn
        .context("CreateTopic returned no ARN")
}

/// Subscribe a queue to a topic with raw delivery, a filter policy and a
/// dead-letter queue for what SNS cannot deliver (its `RedrivePolicy`) if
/// given, as `terraform/` subscribes the queues; the same subscription again
/// is the same one.
pub async fn ensure_subscription(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    queue_arn: &str,
    filter_policy: Option<&str>,
    dlq_arn: Option<&str>,
) -> Result<String> {
    let mut req = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .return_subscription_arn(true);
    if let Some(p) = filter_policy {
        req = req.attributes("FilterPolicy", p);
    }
    if let Some(dlq) = dlq_arn {
        req = req.attributes(
            "RedrivePolicy",
            serde_json::json!({ "deadLetterTargetArn": dlq }).to_string(),
        );
    }
    req.send()
        .await
        .with_context(|| format!("subscribing {queue_arn} to {topic_arn}"))?
        .subscription_arn
        .context("Subscribe returned no ARN")
}

/// Create every resource of the deployment that the local stack can hold,
/// as `terraform/` does: the bucket, both tables, the ingest queue, the feed
/// topic and its queue, their dead-letter queues, the projector's on-failure
/// queue, and with `consumer` the reference consumer's queue and read model.
/// Existing resources are left as they are.
pub async fn provision(clients: &Clients, names: &Names, consumer: bool) -> Result<Deployment> {
    let s = Settings::get();
    ensure_bucket(&clients.s3, &names.bucket).await?;
    ensure_events_table(&clients.dynamodb, &names.events_table).await?;
    ensure_aggregates_table(&clients.dynamodb, &names.aggregates_table).await?;
    let ingest_queue_url = ensure_queue(
        &clients.sqs,
        &names.ingest_queue,
        Some((&names.ingest_dlq, s.ingest.max_receive_count)),
        s.ingest.visibility_timeout_seconds,
        None,
        &s,
    )
    .await?;
    let feed_queue_url = ensure_queue(
        &clients.sqs,
        &names.feed_queue,
        Some((&names.feed_dlq, s.feed.max_receive_count)),
        s.feed.visibility_timeout_seconds,
        None,
        &s,
    )
    .await?;
    let feed_topic_arn = ensure_topic(&clients.sns, &names.feed_topic).await?;
    let feed_queue_arn = crate::queues::queue_arn(&clients.sqs, &feed_queue_url).await?;
    let feed_dlq_arn = crate::queues::queue_arn(&clients.sqs, &queue_url_of(clients, &names.feed_dlq).await?).await?;
    ensure_subscription(
        &clients.sns,
        &feed_topic_arn,
        &feed_queue_arn,
        None,
        Some(&feed_dlq_arn),
    )
    .await?;
    let projector_failures_url = ensure_queue(
        &clients.sqs,
        &names.projector_failures,
        None,
        30,
        Some(s.dlq_retention_seconds),
        &s,
    )
    .await?;
    let consumer = match (&names.consumer, consumer) {
        (Some(c), true) => {
            let queue_url = ensure_queue(
                &clients.sqs,
                &c.queue,
                Some((&c.dlq, s.consumer.max_receive_count)),
                s.consumer.visibility_timeout_seconds,
                None,
                &s,
            )
            .await?;
            let queue_arn = crate::queues::queue_arn(&clients.sqs, &queue_url).await?;
            let policy = s.consumer.filter_policy.to_string();
            let dlq_url = queue_url_of(clients, &c.dlq).await?;
            let dlq_arn = crate::queues::queue_arn(&clients.sqs, &dlq_url).await?;
            ensure_subscription(&clients.sns, &feed_topic_arn, &queue_arn, Some(&policy), Some(&dlq_arn)).await?;
            ensure_aggregates_table(&clients.dynamodb, &c.read_model_table).await?;
            Some(ConsumerDeployment {
                queue_url,
                dlq_url,
                read_model_table: c.read_model_table.clone(),
            })
        }
        _ => None,
    };
    Ok(Deployment {
        names: names.clone(),
        ingest_queue_url,
        feed_topic_arn,
        feed_queue_url,
        projector_failures_url,
        consumer,
    })
}

/// Whether the reference consumer's queue exists (it was provisioned once).
pub async fn consumer_provisioned(clients: &Clients, names: &Names) -> bool {
    match &names.consumer {
        Some(c) => clients.sqs.get_queue_url().queue_name(&c.queue).send().await.is_ok(),
        None => false,
    }
}

async fn queue_url_of(clients: &Clients, name: &str) -> Result<String> {
    clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "queue {name} not found ({}): is the pipeline deployed there, and are the names right?",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?
        .queue_url
        .context("GetQueueUrl returned no URL")
}

/// The ARN of the topic named `name` (ListTopics: SNS has no lookup by name).
async fn topic_arn_of(clients: &Clients, name: &str) -> Result<String> {
    let mut pages = clients.sns.list_topics().into_paginator().items().send();
    while let Some(t) = pages.next().await {
        let t = t.map_err(|e| anyhow::anyhow!("listing topics: {}", aws_sdk_sns::error::DisplayErrorContext(e)))?;
        if let Some(arn) = t.topic_arn.filter(|a| a.rsplit(':').next() == Some(name)) {
            return Ok(arn);
        }
    }
    anyhow::bail!("topic {name} not found: is the pipeline deployed there, and are the names right?")
}

/// Find the queues and topic of an existing deployment by name.
pub async fn resolve(clients: &Clients, names: &Names) -> Result<Deployment> {
    let consumer = match &names.consumer {
        Some(c) => Some(ConsumerDeployment {
            queue_url: queue_url_of(clients, &c.queue).await?,
            dlq_url: queue_url_of(clients, &c.dlq).await?,
            read_model_table: c.read_model_table.clone(),
        }),
        None => None,
    };
    Ok(Deployment {
        names: names.clone(),
        ingest_queue_url: queue_url_of(clients, &names.ingest_queue).await?,
        feed_topic_arn: topic_arn_of(clients, &names.feed_topic).await?,
        feed_queue_url: queue_url_of(clients, &names.feed_queue).await?,
        projector_failures_url: queue_url_of(clients, &names.projector_failures).await?,
        consumer,
    })
}
