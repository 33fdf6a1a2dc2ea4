//! SQS errors as the JSON protocol carries them: a `__type` the SDKs match
//! on, the legacy query-protocol code in `x-amzn-query-error`, a status.

use std::fmt;

/// One of the errors SQS documents for the operations emulated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The queue named does not exist.
    QueueDoesNotExist,
    /// A queue of that name exists with other attributes.
    QueueNameExists,
    /// The receipt handle is not one this queue issued.
    ReceiptHandleIsInvalid,
    /// A batch without entries.
    EmptyBatchRequest,
    /// A batch of more than ten entries.
    TooManyEntriesInBatchRequest,
    /// Two entries of a batch share an id.
    BatchEntryIdsNotDistinct,
    /// An entry id that is not 1 to 80 of `[A-Za-z0-9_-]`.
    InvalidBatchEntryId,
    /// The entries together are larger than the largest message.
    BatchRequestTooLong,
    /// An attribute name SQS does not know.
    InvalidAttributeName,
    /// An attribute value out of its range or malformed.
    InvalidAttributeValue,
    /// A message body with characters SQS does not allow, or none.
    InvalidMessageContents,
    /// A parameter out of its range.
    InvalidParameterValue,
    /// A required parameter is missing.
    MissingParameter,
    /// A queue purged less than 60 seconds ago.
    PurgeQueueInProgress,
    /// Something SQS does that this emulator does not (FIFO queues).
    UnsupportedOperation,
    /// An operation SQS does not have (or this emulator does not serve).
    UnknownOperation,
    /// A request body that is not the operation's JSON.
    SerializationException,
    /// The emulator's own store failed (a 500, which the SDKs retry).
    InternalError,
}

impl Code {
    /// The shape name, as in `com.amazonaws.sqs#<name>`.
    pub fn shape(self) -> &'static str {
        match self {
            Code::QueueDoesNotExist => "QueueDoesNotExist",
            Code::QueueNameExists => "QueueNameExists",
            Code::ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            Code::EmptyBatchRequest => "EmptyBatchRequest",
            Code::TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            Code::BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            Code::InvalidBatchEntryId => "InvalidBatchEntryId",
            Code::BatchRequestTooLong => "BatchRequestTooLong",
            Code::InvalidAttributeName => "InvalidAttributeName",
            Code::InvalidAttributeValue => "InvalidAttributeValue",
            Code::InvalidMessageContents => "InvalidMessageContents",
            Code::InvalidParameterValue => "InvalidParameterValue",
            Code::MissingParameter => "MissingParameter",
            Code::PurgeQueueInProgress => "PurgeQueueInProgress",
            Code::UnsupportedOperation => "UnsupportedOperation",
            Code::UnknownOperation => "UnknownOperationException",
            Code::SerializationException => "SerializationException",
            Code::InternalError => "InternalError",
        }
    }

    /// The `__type`: SQS's own shapes are `com.amazonaws.sqs#…`; an unknown
    /// operation is answered by the service framework (`com.amazon.coral.service#…`).
    pub fn type_name(self) -> String {
        match self {
            Code::UnknownOperation => format!("com.amazon.coral.service#{}", self.shape()),
            _ => format!("com.amazonaws.sqs#{}", self.shape()),
        }
    }

    /// The query-protocol code (`x-amzn-query-error`, and a batch entry's
    /// `Code`), which is what older clients and the docs' error tables name.
    pub fn query_code(self) -> &'static str {
        match self {
            Code::QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            Code::QueueNameExists => "QueueAlreadyExists",
            Code::ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            Code::EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            Code::TooManyEntriesInBatchRequest => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            Code::BatchEntryIdsNotDistinct => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            Code::InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            Code::BatchRequestTooLong => "AWS.SimpleQueueService.BatchRequestTooLong",
            Code::InvalidAttributeName => "InvalidAttributeName",
            Code::InvalidAttributeValue => "InvalidAttributeValue",
            Code::InvalidMessageContents => "InvalidMessageContents",
            Code::InvalidParameterValue => "InvalidParameterValue",
            Code::MissingParameter => "MissingParameter",
            Code::PurgeQueueInProgress => "AWS.SimpleQueueService.PurgeQueueInProgress",
            Code::UnsupportedOperation => "AWS.SimpleQueueService.UnsupportedOperation",
            Code::UnknownOperation => "InvalidAction",
            Code::SerializationException => "SerializationException",
            Code::InternalError => "InternalError",
        }
    }

    /// The HTTP status SQS's model gives each (mostly 400).
    pub fn status(self) -> u16 {
        match self {
            Code::ReceiptHandleIsInvalid => 404,
            Code::PurgeQueueInProgress => 403,
            Code::InternalError => 500,
            _ => 400,
        }
    }

    /// Whose fault: `Sender` (4xx) or `Receiver` (5xx).
    pub fn fault(self) -> &'static str {
        if self.status() >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

/// An error answered to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsError {
    /// Which error.
    pub code: Code,
    /// What was wrong, for a person.
    pub message: String,
}

impl SqsError {
    /// An error of `code` saying `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        SqsError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.shape(), self.message)
    }
}

impl std::error::Error for SqsError {}

impl From<rusqlite::Error> for SqsError {
    fn from(e: rusqlite::Error) -> Self {
        SqsError::new(Code::InternalError, format!("the emulator's store failed: {e}"))
    }
}
