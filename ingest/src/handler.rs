//! The SQS batch: one S3 notification per message, partial batch failures.

use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use crate::error::IngestError;
use crate::ingest::{Ingester, Report};
use crate::notification::{self, Notification};

/// Handle one batch: every message that fails is reported, so only it is
/// retried (and, after the queue's receive limit, moved to the dead-letter queue).
pub async fn handle_batch(ingester: &Ingester, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("message", message_id = %id);
        let _enter = span.enter();
        if let Err(e) = handle_message(ingester, &message, deadline).await {
            tracing::error!(error = %e, retryable = e.is_retryable(), "message failed");
            response.add_failure(id);
        }
    }
    response
}

/// Handle one message: every object it announces, in order.
pub async fn handle_message(
    ingester: &Ingester,
    message: &SqsMessage,
    deadline: Option<Instant>,
) -> Result<Vec<Report>, IngestError> {
    let id = message.message_id.clone().unwrap_or_default();
    let body = message.body.as_deref().unwrap_or_default();
    let objects = match notification::parse(body) {
        Ok(Notification::Test) => {
            tracing::info!("s3:TestEvent: nothing to ingest");
            return Ok(Vec::new());
        }
        Ok(Notification::Created(objects)) => objects,
        Err(source) => return Err(IngestError::BadMessage { message_id: id, source }),
    };
    let mut reports = Vec::with_capacity(objects.len());
    for obj in &objects {
        reports.push(ingester.ingest_object(obj, deadline).await?);
    }
    Ok(reports)
}
