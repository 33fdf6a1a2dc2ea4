//! The S3 edge: what an object is (size, identity) and its bytes as a stream.

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use crate::error::IngestError;
use crate::notification::ObjectRef;

/// What a `HeadObject` tells.
#[derive(Debug, Clone)]
pub struct Head {
    /// Size in bytes.
    pub size: u64,
    /// The content's identity, when S3 holds a whole-object SHA-256 for it.
    pub file_id: Option<String>,
}

/// The object is gone (deleted or overwritten by a newer version before we read it).
#[derive(Debug)]
pub struct Gone;

fn s3_err<'a, E, R>(obj: &'a ObjectRef, operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> IngestError + 'a
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| IngestError::S3 {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// `HeadObject` with checksums. A full-object SHA-256 (what `pipeline upload`
/// sends) is the file id at no read cost; a composite (multipart) checksum is not.
pub async fn head(s3: &Client, obj: &ObjectRef) -> Result<Result<Head, Gone>, IngestError> {
    let res = s3
        .head_object()
        .bucket(&obj.bucket)
        .key(&obj.key)
        .set_version_id(obj.version_id.clone())
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    let out = match res {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => return Ok(Err(Gone)),
        Err(e) => return Err(s3_err(obj, "HeadObject")(e)),
    };
    let whole = !matches!(out.checksum_type(), Some(ChecksumType::Composite));
    let file_id = out
        .checksum_sha256()
        .filter(|c| whole && !c.contains('-'))
        .and_then(|c| aws_smithy_types::base64::decode(c).ok())
        .filter(|d| d.len() == 32)
        .map(|d| schema::keys::file_id_from_digest(&d));
    Ok(Ok(Head {
        size: out.content_length().unwrap_or(0).max(0) as u64,
        file_id,
    }))
}

/// `GetObject` from `from_byte` on. `Ok(Err(Gone))` if the object no longer exists.
pub async fn get(s3: &Client, obj: &ObjectRef, from_byte: u64) -> Result<Result<GetObjectOutput, Gone>, IngestError> {
    let range = (from_byte > 0).then(|| format!("bytes={from_byte}-"));
    let res = s3
        .get_object()
        .bucket(&obj.bucket)
        .key(&obj.key)
        .set_version_id(obj.version_id.clone())
        .set_range(range)
        .send()
        .await;
    match res {
        Ok(o) => Ok(Ok(o)),
        Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => Ok(Err(Gone)),
        Err(e) => Err(s3_err(obj, "GetObject")(e)),
    }
}

/// Read the whole object once to hash it, for objects S3 holds no SHA-256 of.
pub async fn hash(s3: &Client, obj: &ObjectRef) -> Result<Result<String, Gone>, IngestError> {
    let out = match get(s3, obj, 0).await? {
        Ok(o) => o,
        Err(g) => return Ok(Err(g)),
    };
    let mut body = out.body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.try_next().await.map_err(|e| IngestError::S3 {
        bucket: obj.bucket.clone(),
        key: obj.key.clone(),
        operation: "GetObject",
        message: format!("reading the body: {e}"),
    })? {
        hasher.update(&chunk);
    }
    Ok(Ok(schema::keys::file_id_from_digest(&hasher.finalize())))
}
