//! Stream records of the events table to what the projector acts on.

use aws_lambda_events::dynamodb::EventRecord;
use schema::items::{EventItem, ItemKind, Manifest};

/// What one stream record means to the projector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A line's event was written (events are written once and never change).
    Event {
        /// The event.
        event: Box<EventItem>,
        /// When the stream recorded it (epoch seconds).
        at: i64,
    },
    /// A manifest changed; final ones announce `file.completed`.
    Manifest(Box<Manifest>),
    /// Upload records and removals: nothing to project.
    Ignored,
}

/// A record the projector cannot read: reported as a batch item failure,
/// never skipped silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream record {sequence_number} ({event_name}): {reason}")]
pub struct DecodeError {
    /// The record's sequence number.
    pub sequence_number: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    /// What is wrong.
    pub reason: String,
}

/// Read one record.
pub fn decode(rec: &EventRecord) -> Result<Change, DecodeError> {
    let err = |reason: String| DecodeError {
        sequence_number: rec.change.sequence_number.clone().unwrap_or_default(),
        event_name: rec.event_name.clone(),
        reason,
    };
    if rec.event_name == "REMOVE" {
        return Ok(Change::Ignored);
    }
    let image = &rec.change.new_image;
    let kind = image
        .get("kind")
        .ok_or_else(|| err("the new image has no `kind` (is the stream view NEW_IMAGE?)".into()))?;
    let kind: ItemKind = serde_dynamo::from_attribute_value(kind.clone()).map_err(|e| err(format!("kind: {e}")))?;
    match kind {
        ItemKind::Event => {
            if rec.event_name != "INSERT" {
                return Err(err("an event changed after it was written: events are immutable".into()));
            }
            let event: EventItem =
                serde_dynamo::from_item(image.clone()).map_err(|e| err(format!("event does not decode: {e}")))?;
            Ok(Change::Event {
                event: Box::new(event),
                at: rec.change.approximate_creation_date_time.timestamp(),
            })
        }
        ItemKind::Manifest => {
            let m: Manifest =
                serde_dynamo::from_item(image.clone()).map_err(|e| err(format!("manifest does not decode: {e}")))?;
            Ok(Change::Manifest(Box::new(m)))
        }
        ItemKind::Upload | ItemKind::Chunk => Ok(Change::Ignored),
    }
}
