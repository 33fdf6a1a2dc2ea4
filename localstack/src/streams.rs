//! Reading the events table's stream through the real DynamoDB Streams API
//! (`DescribeTable`, `DescribeStream`, `GetShardIterator`, `GetRecords`) and
//! turning its records into the event Lambda hands the projector.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_lambda_events::dynamodb::{EventRecord, StreamRecord};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use chrono::{TimeZone, Utc};

/// One table's stream, read shard by shard, from the start (`TRIM_HORIZON`)
/// or after the positions a previous reader reached (as an event source
/// mapping keeps its place).
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    /// Shard id to its next iterator (`None` once the shard is closed and drained).
    iterators: Vec<(String, Option<String>)>,
    /// Shard id to the last sequence number handed out.
    positions: HashMap<String, String>,
    last_shard: Option<String>,
}

impl StreamReader {
    /// Open the stream of `table` at its oldest record.
    pub async fn open(
        ddb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
    ) -> Result<Self> {
        Self::open_after(ddb, client, table, HashMap::new()).await
    }

    /// Open the stream of `table` after the given positions (shard id to last
    /// sequence number read); shards without one start at their oldest record.
    pub async fn open_after(
        ddb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        positions: HashMap<String, String>,
    ) -> Result<Self> {
        let desc = ddb.describe_table().table_name(table).send().await?;
        let arn = desc
            .table()
            .and_then(|t| t.latest_stream_arn())
            .with_context(|| format!("table {table} has no stream"))?
            .to_owned();
        let stream = client.describe_stream().stream_arn(&arn).send().await?;
        let mut iterators = Vec::new();
        for shard in stream.stream_description().map(|d| d.shards()).unwrap_or_default() {
            let id = shard.shard_id().unwrap_or_default().to_owned();
            let req = client.get_shard_iterator().stream_arn(&arn).shard_id(&id);
            let req = match positions.get(&id) {
                Some(seq) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(seq),
                None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            iterators.push((id, req.send().await?.shard_iterator));
        }
        Ok(StreamReader {
            client,
            arn,
            iterators,
            positions,
            last_shard: None,
        })
    }

    /// The stream's ARN.
    pub fn stream_arn(&self) -> &str {
        &self.arn
    }

    /// The shard of the last non-empty batch.
    pub fn last_shard(&self) -> Option<&str> {
        self.last_shard.as_deref()
    }

    /// Where each shard stands: save it, and `open_after` it next time.
    pub fn positions(&self) -> &HashMap<String, String> {
        &self.positions
    }

    /// Up to `limit` records from the next shard that has any, as Lambda would
    /// deliver them (one shard per batch); empty when every shard is drained.
    pub async fn next_batch(&mut self, limit: i32) -> Result<Vec<EventRecord>> {
        for (shard, it) in self.iterators.iter_mut() {
            let Some(current) = it.clone() else { continue };
            let out = self
                .client
                .get_records()
                .shard_iterator(current)
                .limit(limit)
                .send()
                .await?;
            *it = out.next_shard_iterator.clone();
            let records: Vec<EventRecord> = out.records().iter().map(|r| convert(&self.arn, r)).collect();
            if let Some(seq) = records.last().and_then(|r| r.change.sequence_number.clone()) {
                self.positions.insert(shard.clone(), seq);
                self.last_shard = Some(shard.clone());
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    /// Every record available now, in batches of `limit`.
    pub async fn drain(&mut self, limit: i32) -> Result<Vec<Vec<EventRecord>>> {
        let mut batches = Vec::new();
        loop {
            let b = self.next_batch(limit).await?;
            if b.is_empty() {
                return Ok(batches);
            }
            batches.push(b);
        }
    }
}

fn convert(arn: &str, r: &aws_sdk_dynamodbstreams::types::Record) -> EventRecord {
    let mut e = EventRecord::default();
    e.aws_region = crate::identity::REGION.to_owned();
    e.event_id = r.event_id().unwrap_or_default().to_owned();
    e.event_name = r.event_name().map(|n| n.as_str().to_owned()).unwrap_or_default();
    e.event_source = Some("aws:dynamodb".to_owned());
    e.event_version = r.event_version().map(str::to_owned);
    e.event_source_arn = Some(arn.to_owned());
    if let Some(s) = r.dynamodb() {
        let item = |m: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
            m.cloned().map(serde_dynamo::Item::from).unwrap_or_default()
        };
        let mut change = StreamRecord::default();
        change.approximate_creation_date_time = s
            .approximate_creation_date_time()
            .and_then(|t| Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single())
            .unwrap_or_default();
        change.keys = item(s.keys());
        change.new_image = item(s.new_image());
        change.old_image = item(s.old_image());
        change.sequence_number = s.sequence_number().map(str::to_owned);
        change.size_bytes = s.size_bytes().unwrap_or(0);
        e.change = change;
    }
    e
}
