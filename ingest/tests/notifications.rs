//! S3's notification of a put in a versioned bucket, as its user guide
//! documents it (the sample the local stack's test kit delivers).

use ingest::notification::{parse, Notification};

#[test]
fn a_put_in_a_versioned_bucket_as_aws_documents_it() {
    let body = localstack::testing::S3_PUT_VERSIONED;
    let Notification::Created(objs) = parse(body).unwrap() else {
        panic!("an ObjectCreated event")
    };
    let o = &objs[0];
    assert_eq!(
        (o.bucket.as_str(), o.key.as_str(), o.size),
        ("mybucket", "HappyFace.jpg", Some(1024))
    );
    assert_eq!(o.version_id.as_deref(), Some("096fKKXTRTtl3on89fVO.nfljtsv6qko"));
    assert_eq!(o.sequencer.as_deref(), Some("0055AED6DCD90281E5"));
    // Versioning suspended: S3 names the null version, which is read as named.
    let suspended = body.replace("096fKKXTRTtl3on89fVO.nfljtsv6qko", "null");
    let Notification::Created(objs) = parse(&suspended).unwrap() else {
        panic!("an ObjectCreated event")
    };
    assert_eq!(objs[0].version_id.as_deref(), Some("null"));
}
