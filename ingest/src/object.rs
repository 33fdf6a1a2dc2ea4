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
    /// The version read (none on an unversioned bucket).
    pub version_id: Option<String>,
}

/// The object (the version the notification named) is gone: deleted
/// before it was read.
#[derive(Debug)]
pub struct Gone;

/// Whether S3's answer to a read of a named version says it no longer exists:
/// 404 (`NoSuchKey`, `NoSuchVersion`, or a HEAD's bodiless `NotFound`), or
/// 405, which S3 answers when the version named is a delete marker. A 403
/// stays an error: without `s3:ListBucket` S3 also answers 403 for a missing
/// object, but a 403 is just as likely a real denial, which must not be
/// recorded as a failed file.
fn is_gone(status: u16, code: Option<&str>) -> bool {
    matches!(status, 404 | 405) || matches!(code, Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
}

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
        Err(e) if gone(&e) => return Ok(Err(Gone)),
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
        version_id: out.version_id().map(str::to_owned),
    }))
}

/// `GetObject` from `from_byte` on, up to `to_byte` (exclusive) if given. `Ok(Err(Gone))` if the object no longer exists.
pub async fn get(
    s3: &Client,
    obj: &ObjectRef,
    from_byte: u64,
    to_byte: Option<u64>,
) -> Result<Result<GetObjectOutput, Gone>, IngestError> {
    let range = match to_byte {
        // HTTP ranges name the last byte, not the one after it.
        Some(to) => Some(format!("bytes={from_byte}-{}", to.saturating_sub(1))),
        None => (from_byte > 0).then(|| format!("bytes={from_byte}-")),
    };
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
        Err(e) if gone(&e) => Ok(Err(Gone)),
        // A checkpoint at the very end (the last line written, the end not yet
        // seen): nothing is left to read, which S3 answers 416.
        Err(e) if from_byte > 0 && e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
            Ok(Ok(GetObjectOutput::builder()
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
                .build()))
        }
        Err(e) => Err(s3_err(obj, "GetObject")(e)),
    }
}

fn gone<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.as_service_error().and_then(|se| se.code());
    status.is_some_and(|s| is_gone(s, code)) || code.is_some_and(|c| is_gone(0, Some(c)))
}

/// Read the whole object once to hash it, for objects S3 holds no SHA-256 of.
pub async fn hash(s3: &Client, obj: &ObjectRef) -> Result<Result<String, Gone>, IngestError> {
    let out = match get(s3, obj, 0, None).await? {
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

#[cfg(test)]
mod tests {
    use super::is_gone;

    #[test]
    fn what_says_the_notified_version_is_gone() {
        for (status, code) in [
            (404, Some("NoSuchKey")),
            (404, Some("NoSuchVersion")),
            (404, None),
            (405, Some("MethodNotAllowed")),
            (0, Some("NoSuchVersion")),
        ] {
            assert!(is_gone(status, code), "{status} {code:?}");
        }
        for (status, code) in [
            (403, Some("AccessDenied")),
            (403, None),
            (500, Some("InternalError")),
            (503, None),
        ] {
            assert!(!is_gone(status, code), "{status} {code:?}");
        }
    }
}
