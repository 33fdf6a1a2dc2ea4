//! `pipeline reingest`: ingest a failed file again, under the dataset
//! definitions the ingest has now, without a new upload.
//!
//! A failed manifest makes any later notification of the same content an
//! O(1) duplicate, so fixing a definition alone changes nothing. Here the
//! manifest is reset (only while it is `failed`: a condition, not a check
//! then a write), the chunk items of a planned file are removed, and the
//! notification S3 would send is put on the ingest queue, naming the object's
//! current version (which must still be the failed content). The file is
//! routed to its dataset again. The ingest then runs as for a new upload; events already
//! written keep their outcome (they are immutable), and their lines count as
//! already present.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use schema::items::{FileStatus, Manifest};
use schema::Registry;
use serde::Serialize;

use crate::queries::{get_item, resolve_key};
use crate::target::Target;

/// What `reingest` did.
#[derive(Debug, Clone, Serialize)]
pub struct Reingest {
    /// Object key.
    pub key: String,
    /// The content's id.
    pub file_id: String,
    /// Why it had failed.
    pub previous_reason: Option<String>,
    /// Chunk items removed (a file that was planned into chunks).
    pub chunks_removed: u64,
    /// The object version the notification names (none on an unversioned bucket).
    pub version_id: Option<String>,
}

/// Reset the failed file at `file` (a key, with or without the upload
/// prefix) and notify the ingest again. Refused, with the reason, for a file
/// never ingested, one complete, or one being ingested.
pub async fn reingest(target: &Target, file: &str) -> Result<Reingest> {
    let names = &target.deployment.names;
    let ddb = &target.clients.dynamodb;
    let key = resolve_key(target, file).await;
    let upload = get_item(ddb, &names.events_table, schema::keys::upload_pk(&names.bucket, &key))
        .await?
        .with_context(|| {
            format!(
                "{key}: no upload record: never uploaded under this key, or not yet ingested (pipeline status {key})"
            )
        })?;
    let upload: schema::Upload = serde_dynamo::from_item(upload)?;
    let m: Manifest = serde_dynamo::from_item(
        get_item(ddb, &names.events_table, schema::keys::manifest_pk(&upload.file_id))
            .await?
            .with_context(|| format!("{key}: no manifest for file {}", upload.file_id))?,
    )?;
    match m.status {
        FileStatus::Failed => {}
        FileStatus::Complete => bail!(
            "{key} is complete ({} lines, {} accepted, {} rejected): there is nothing to ingest again; \
             to ingest other content, upload it",
            m.rows,
            m.accepted,
            m.rejected
        ),
        FileStatus::Ingesting => bail!(
            "{key} is being ingested ({} lines so far): wait until it ends (pipeline status {key})",
            m.rows
        ),
    }
    if m.file_id.starts_with("gone-") {
        bail!("{key}: the object was gone when it was notified; there is no content to ingest again");
    }
    // The object as it is now must be the failed content: a key overwritten
    // since is another file (its own upload is ingested on its own).
    let obj = ingest::ObjectRef {
        bucket: names.bucket.clone(),
        key: key.clone(),
        size: None,
        version_id: None,
        sequencer: None,
    };
    let head = ingest::object::head(&target.clients.s3, &obj)
        .await?
        .map_err(|_| anyhow::anyhow!("s3://{}/{key} is gone: nothing to ingest again", names.bucket))?;
    let same = match &head.file_id {
        Some(id) => *id == m.file_id,
        // No whole-object checksum to compare: the size must match at least.
        None => head.size == m.size,
    };
    if !same {
        bail!(
            "s3://{}/{key} now holds other content than the failed file {}: upload it again to ingest it",
            names.bucket,
            m.file_id
        );
    }
    // Chunk items first, while the manifest is still failed (a chunk task
    // still in flight finds a final file and stops), then the reset.
    let chunks_removed = if m.chunked {
        remove_chunks(target, &m.file_id).await?
    } else {
        0
    };
    let key_in_prefix = key.strip_prefix(&names.upload_prefix).unwrap_or(&key);
    let dataset = Registry::builtin().route(key_in_prefix).clone();
    reset(target, &m.file_id, &dataset.name, dataset.version).await?;
    let version = head.version_id.clone();
    let body = localstack::notify::notification_body(
        &names.bucket,
        &key,
        "ObjectCreated:Put",
        head.size,
        "",
        &format!("{:016X}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)),
        version.as_deref(),
    );
    let sent = target
        .clients
        .sqs
        .send_message()
        .queue_url(&target.deployment.ingest_queue_url)
        .message_body(body)
        .send()
        .await;
    if let Err(e) = sent {
        // Put the failure back, so the file is not left `ingesting` with no run.
        let _ = fail_again(target, &m.file_id, m.reason.as_deref().unwrap_or("")).await;
        return Err(anyhow::Error::new(e).context(format!(
            "{key}: the notification could not be sent; the file is failed again"
        )));
    }
    Ok(Reingest {
        key,
        file_id: m.file_id,
        previous_reason: m.reason,
        chunks_removed,
        version_id: version,
    })
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn manifest_key(file_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            schema::keys::PK.to_owned(),
            AttributeValue::S(schema::keys::manifest_pk(file_id)),
        ),
        (schema::keys::SK.to_owned(), n(0)),
    ])
}

/// The manifest back to a file never read: `ingesting` with no lease, no
/// progress, no plan, no reason; only while it is still `failed`.
async fn reset(target: &Target, file_id: &str, dataset: &str, version: u32) -> Result<()> {
    let zeroed = [
        "lease_until",
        "rows",
        "accepted",
        "rejected",
        "written",
        "already_present",
        "checkpoint_line",
        "checkpoint_byte",
        "plan_byte",
        "plan_line",
        "chunks_planned",
    ];
    let removed = ["reason", "completed_at", "header", "chunks_total", "chunks_done"];
    let mut names: HashMap<String, String> = HashMap::new();
    let mut set = vec![
        "#status = :ingesting".to_owned(),
        "#chunked = :no".to_owned(),
        "#updated = :now".to_owned(),
    ];
    for (i, a) in zeroed.iter().enumerate() {
        names.insert(format!("#z{i}"), (*a).to_owned());
        set.push(format!("#z{i} = :zero"));
    }
    let mut remove = Vec::new();
    for (i, a) in removed.iter().enumerate() {
        names.insert(format!("#r{i}"), (*a).to_owned());
        remove.push(format!("#r{i}"));
    }
    names.insert("#status".into(), "status".into());
    names.insert("#chunked".into(), "chunked".into());
    names.insert("#updated".into(), "updated_at".into());
    // Routed again: a file that failed under the wrong dataset goes to the right one.
    set.push("#dataset = :dataset".to_owned());
    set.push("#dsv = :dsv".to_owned());
    names.insert("#dataset".into(), "dataset".into());
    names.insert("#dsv".into(), "dataset_version".into());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let res = target
        .clients
        .dynamodb
        .update_item()
        .table_name(&target.deployment.names.events_table)
        .set_key(Some(manifest_key(file_id)))
        .update_expression(format!("SET {} REMOVE {}", set.join(", "), remove.join(", ")))
        .condition_expression("#status = :failed")
        .set_expression_attribute_names(Some(names))
        .expression_attribute_values(":ingesting", AttributeValue::S(FileStatus::Ingesting.as_str().into()))
        .expression_attribute_values(":failed", AttributeValue::S(FileStatus::Failed.as_str().into()))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .expression_attribute_values(":now", AttributeValue::S(now))
        .expression_attribute_values(":dataset", AttributeValue::S(dataset.to_owned()))
        .expression_attribute_values(":dsv", n(u64::from(version)))
        .send()
        .await;
    match res {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            bail!("file {file_id} is no longer failed (another reingest, or a run, changed it): see pipeline status")
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("resetting the manifest of {file_id}"))),
    }
}

/// Undo [`reset`] when the notification could not be sent.
async fn fail_again(target: &Target, file_id: &str, reason: &str) -> Result<()> {
    target
        .clients
        .dynamodb
        .update_item()
        .table_name(&target.deployment.names.events_table)
        .set_key(Some(manifest_key(file_id)))
        .update_expression("SET #status = :failed, reason = :reason")
        .condition_expression("#status = :ingesting")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":failed", AttributeValue::S(FileStatus::Failed.as_str().into()))
        .expression_attribute_values(":ingesting", AttributeValue::S(FileStatus::Ingesting.as_str().into()))
        .expression_attribute_values(":reason", AttributeValue::S(reason.to_owned()))
        .send()
        .await?;
    Ok(())
}

/// Delete the chunk items of a file (sort keys above 0 under its manifest's
/// partition): a new plan writes them again.
async fn remove_chunks(target: &Target, file_id: &str) -> Result<u64> {
    let ddb = &target.clients.dynamodb;
    let table = &target.deployment.names.events_table;
    let mut keys = Vec::new();
    let mut pages = ddb
        .query()
        .table_name(table)
        .key_condition_expression("#pk = :pk AND #sk > :zero")
        .expression_attribute_names("#pk", schema::keys::PK)
        .expression_attribute_names("#sk", schema::keys::SK)
        .expression_attribute_values(":pk", AttributeValue::S(schema::keys::manifest_pk(file_id)))
        .expression_attribute_values(":zero", n(0))
        .projection_expression("#pk, #sk")
        .consistent_read(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        keys.extend(
            page.with_context(|| format!("listing the chunks of {file_id}"))?
                .items
                .unwrap_or_default(),
        );
    }
    let removed = keys.len() as u64;
    for batch in keys.chunks(25) {
        let mut requests: Vec<WriteRequest> = batch
            .iter()
            .map(|k| {
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(k.clone()))
                            .build()
                            .expect("key set"),
                    )
                    .build()
            })
            .collect();
        for attempt in 0..8 {
            let out = ddb
                .batch_write_item()
                .request_items(table.clone(), requests)
                .send()
                .await
                .with_context(|| format!("deleting the chunks of {file_id}"))?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table.as_str()))
                .unwrap_or_default();
            if requests.is_empty() {
                break;
            }
            anyhow::ensure!(attempt < 7, "DynamoDB kept chunks of {file_id} unprocessed");
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
    Ok(removed)
}
