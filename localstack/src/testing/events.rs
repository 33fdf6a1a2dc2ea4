//! Events exactly as AWS delivers them: S3's notification of a put in a
//! versioned bucket (the S3 user guide's example, `versionId` and
//! `sequencer` included) inside the SQS record Lambda hands the function.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde_json::{json, Value};

/// S3's `ObjectCreated:Put` event from a versioned bucket, as its user guide
/// documents it.
pub const S3_PUT_VERSIONED: &str = include_str!("../../testdata/s3-put-versioned.json");

/// The body S3 sends for a put of `key` (encoded as S3 encodes keys) in
/// `bucket`, naming `version`.
pub fn put_notification(bucket: &str, key: &str, version: &str) -> String {
    let mut event: Value = serde_json::from_str(S3_PUT_VERSIONED).expect("the sample is JSON");
    let rec = &mut event["Records"][0]["s3"];
    rec["bucket"]["name"] = bucket.into();
    rec["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    rec["object"]["key"] = crate::notify::encode_key(key).into();
    rec["object"]["versionId"] = version.into();
    event.to_string()
}

/// One SQS record as the event source mapping hands it to the function.
pub fn sqs_record(id: &str, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("AQEB{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764437402123",
            "SenderId": "AIDAJDPLRKLG7UEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1764437402130"
        },
        "messageAttributes": {},
        "md5OfBody": format!("{:x}", md5::compute(body)),
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{}:{}:csv-pipeline-ingest", crate::identity::REGION, crate::identity::ACCOUNT),
        "awsRegion": crate::identity::REGION
    })
}

/// The SQS message carrying S3's notification of a put of `key`, naming
/// [`version_of`] the key. The local S3 keeps no versions and serves the
/// object whatever version is named, so tests check the version a reader
/// asked for with [`super::S3Reads`].
pub fn notification(id: &str, bucket: &str, key: &str) -> SqsMessage {
    let body = put_notification(bucket, key, &version_of(key));
    serde_json::from_value(sqs_record(id, &body)).expect("an SQS record")
}

/// The version id the test notifications name for `key`.
pub fn version_of(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    let hex: String = d[..12].iter().map(|x| format!("{x:02x}")).collect();
    format!("v{hex}")
}

/// An SQS event of `messages`, as the mapping delivers a batch.
pub fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}
