//! Uploads that carry the file's identity: a whole-object SHA-256 checksum,
//! which S3 verifies and keeps, so the ingest needs no extra read to hash.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Upload `path` to `bucket/key` with its SHA-256. Returns the file id.
pub async fn upload_file(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, path: &Path) -> Result<String> {
    let digest = sha256_file(path)?;
    upload_bytes_or_path(s3, bucket, key, ByteStream::from_path(path).await?, &digest).await
}

/// Upload bytes to `bucket/key` with their SHA-256. Returns the file id.
pub async fn upload_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<String> {
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    upload_bytes_or_path(s3, bucket, key, ByteStream::from(bytes), &digest).await
}

async fn upload_bytes_or_path(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: ByteStream,
    digest: &[u8; 32],
) -> Result<String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .checksum_sha256(aws_smithy_types::base64::encode(digest))
        .content_type("text/csv")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
        .with_context(|| format!("uploading s3://{bucket}/{key}"))?;
    Ok(schema::keys::file_id_from_digest(digest))
}
