"""Self-test of moto_server.py's fixes 9-11 (and 3): start it on a free
loopback port with IAM enforced, bootstrap an admin as `check.py bootstrap`
does, and prove with boto3 that S3 events and S3 authorization behave as on
AWS where the pipeline depends on them. Prints one ok:/FAIL: line per check
and "N passed, M failed"; exits non-zero on any failure. Takes seconds.

Usage: moto_selftest.py [SERVER]   (SERVER: moto_server.py beside this file)
"""
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

HERE = pathlib.Path(__file__).resolve().parent
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
results = []


def check(what, passed, detail=""):
    passed = bool(passed)
    results.append(passed)
    print(f"ok: {what}" if passed else f"FAIL: {what}{': ' + detail if detail else ''}", flush=True)


def denied(call):
    """'denied', 'allowed', or the unexpected error, for one S3 call."""
    try:
        call()
        return "allowed"
    except botocore.exceptions.ClientError as e:
        # A GET's denial is AccessDenied; a HEAD's, and moto's bucket-policy
        # denial (an empty 403), come without a body: code "403".
        code = e.response["Error"]["Code"]
        return "denied" if code in ("AccessDenied", "403") else f"error {e.response['Error']}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(server, log):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # 3 requests unauthenticated: the admin's user, policy and key.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    return proc, None


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Aws:
    def __init__(self, endpoint, **creds):
        self.endpoint, self.creds = endpoint, creds

    def __call__(self, service):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
                            **self.creds)


def bootstrap(endpoint):
    """As check.py bootstrap: an operator user with an Allow-all policy."""
    iam = Aws(endpoint, aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")("iam")
    iam.create_user(UserName="operator")
    iam.put_user_policy(UserName="operator", PolicyName="admin", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    return Aws(endpoint, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])


def role(aws, name, statements):
    """A role the operator may assume holding exactly `statements`; its
    assumed credentials."""
    operator = f"arn:aws:iam::{ACCOUNT}:user/operator"
    iam = aws("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": operator}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="only", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    c = aws("sts").assume_role(RoleArn=arn, RoleSessionName="selftest")["Credentials"]
    return Aws(aws.endpoint, aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
               aws_session_token=c["SessionToken"])


def messages(sqs, queue):
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    for m in got:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in got]


def notified_bucket(aws, bucket, versioned):
    """A bucket whose ObjectCreated events go to its own queue."""
    s3, sqs = aws("s3"), aws("sqs")
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queue = sqs.create_queue(QueueName=f"{bucket}-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"Id": "created", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return queue


def sequenced(a, b):
    """S3's rule: a later sequencer is greater, compared zero-padded."""
    width = max(len(a), len(b))
    return a.zfill(width) < b.zfill(width)


def test_notifications(aws):
    s3, sqs = aws("s3"), aws("sqs")
    queue = notified_bucket(aws, "selftest-versioned", versioned=True)
    test_events = messages(sqs, queue)
    check("configuring notifications still sends exactly the s3:TestEvent",
          [sorted(e) for e in test_events] == [["Bucket", "Event", "Service", "Time"]]
          and test_events[0]["Event"] == "s3:TestEvent", json.dumps(test_events))

    puts = [s3.put_object(Bucket="selftest-versioned", Key="uploads/a b.csv", Body=body)["VersionId"]
            for body in (b"one", b"two")]
    records = [r for m in messages(sqs, queue) for r in m.get("Records", [])]
    objects = [r["s3"]["object"] for r in records]
    check("a versioned bucket's event carries the versionId put_object returned, per write",
          [o.get("versionId") for o in objects] == puts, f"put {puts}, events {objects}")
    hexes = [o.get("sequencer") or "" for o in objects]
    check("its events carry a hex sequencer that grows from one write to the next",
          len(hexes) == 2 and all(re.fullmatch(r"[0-9A-F]+", h) for h in hexes) and sequenced(*hexes),
          f"sequencers {hexes}")
    check("the key is encoded as S3 does (\"/\" kept, space as +), the rest as before",
          bool(records) and records[0]["eventName"] == "ObjectCreated:Put" and records[0]["eventVersion"] == "2.1"
          and objects[0]["key"] == "uploads/a+b.csv" and objects[0]["size"] == 3 and "eTag" in objects[0],
          json.dumps(records[:1]))

    plain = notified_bucket(aws, "selftest-unversioned", versioned=False)
    messages(sqs, plain)
    s3.put_object(Bucket="selftest-unversioned", Key="a.csv", Body=b"x")
    objects = [r["s3"]["object"] for m in messages(sqs, plain) for r in m.get("Records", [])]
    check("an unversioned bucket's event has no versionId, and a sequencer",
          len(objects) == 1 and "versionId" not in objects[0] and objects[0].get("sequencer"), json.dumps(objects))


def test_versioned_reads(aws):
    bucket, key = "selftest-versioned", "uploads/read.csv"
    version = aws("s3").put_object(Bucket=bucket, Key=key, Body=b"data")["VersionId"]
    objects = f"arn:aws:s3:::{bucket}/*"
    get_only = role(aws, "get-only", [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects}])("s3")
    get_version = role(aws, "get-version", [{"Effect": "Allow", "Action": "s3:GetObjectVersion",
                                             "Resource": objects}])("s3")
    unnamed = {
        "get_object": denied(lambda: get_only.get_object(Bucket=bucket, Key=key)),
        "head_object": denied(lambda: get_only.head_object(Bucket=bucket, Key=key)),
    }
    check("a role holding only s3:GetObject may get_object and head_object without VersionId",
          set(unnamed.values()) == {"allowed"}, str(unnamed))
    for op in ("get_object", "head_object"):
        got = denied(lambda: getattr(get_only, op)(Bucket=bucket, Key=key, VersionId=version))
        check(f"a role holding only s3:GetObject is denied {op} with VersionId (s3:GetObjectVersion)",
              got == "denied", got)
    named = {op: denied(lambda: getattr(get_version, op)(Bucket=bucket, Key=key, VersionId=version))
             for op in ("get_object", "head_object")}
    check("a role holding s3:GetObjectVersion may get_object and head_object with VersionId",
          set(named.values()) == {"allowed"}, str(named))


def test_stream_reads(aws):
    """Fix 12: DynamoDB Streams calls are judged against the stream's ARN."""
    ddb = aws("dynamodb")
    table = ddb.create_table(
        TableName="selftest-events", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})["TableDescription"]
    stream = table["LatestStreamArn"]
    ddb.put_item(TableName="selftest-events", Item={"pk": {"S": "a"}})
    reads = ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"]

    def read(client):
        shard = client.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"][0]["ShardId"]
        it = client.get_shard_iterator(StreamArn=stream, ShardId=shard,
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        return len(client.get_records(ShardIterator=it)["Records"])

    def outcome(client):
        try:
            return f"read {read(client)}"
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            return "denied" if code in ("AccessDenied", "AccessDeniedException", "403") else f"error {code}"

    on_stream = role(aws, "stream-reader", [{"Effect": "Allow", "Action": reads, "Resource": stream}])
    got = outcome(on_stream("dynamodbstreams"))
    check("a role granted the stream reads on the stream's ARN reads it", got == "read 1", got)
    other = stream.replace("selftest-events", "other-table")
    elsewhere = role(aws, "other-stream-reader", [{"Effect": "Allow", "Action": reads, "Resource": other}])
    got = outcome(elsewhere("dynamodbstreams"))
    check("a role granted the stream reads on another stream is denied", got == "denied", got)


def test_feed_topic(aws):
    """Fix 13: PublishBatch is judged as sns:Publish on the topic's ARN; and
    what the feed relies on from moto: raw delivery keeps the message
    attributes, a filter policy on them chooses the subscriber."""
    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name="selftest-feed")["TopicArn"]
    queues = {}
    for name, policy in [("selftest-all", None), ("selftest-changes", {"type": ["aggregate.changed"]})]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs = {"RawMessageDelivery": "true"}
        if policy:
            attrs["FilterPolicy"] = json.dumps(policy)
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attrs)
        queues[name] = url
    entries = [{"Id": str(i), "Message": json.dumps({"n": i}),
                "MessageAttributes": {"type": {"DataType": "String", "StringValue": t}}}
               for i, t in enumerate(["aggregate.changed", "file.completed"])]

    def publish(client):
        try:
            out = client.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
            return f"published {len(out['Successful'])}"
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            return "denied" if code in ("AccessDenied", "AccessDeniedException", "AuthorizationError", "403") else f"error {code}"

    publisher = role(aws, "feed-publisher", [{"Effect": "Allow", "Action": "sns:Publish", "Resource": topic}])
    got = publish(publisher("sns"))
    check("a role granted sns:Publish on the topic may PublishBatch to it", got == "published 2", got)
    elsewhere = role(aws, "other-publisher", [{"Effect": "Allow", "Action": "sns:Publish",
                                               "Resource": topic.replace("selftest-feed", "other")}])
    got = publish(elsewhere("sns"))
    check("a role granted sns:Publish on another topic is denied", got == "denied", got)
    everything = sqs.receive_message(QueueUrl=queues["selftest-all"], MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     MessageAttributeNames=["All"]).get("Messages", [])
    bodies = sorted(m["Body"] for m in everything)
    check("raw delivery: the bodies as published", bodies == ['{"n": 0}', '{"n": 1}'], str(bodies))
    types = sorted(m.get("MessageAttributes", {}).get("type", {}).get("StringValue", "") for m in everything)
    check("raw delivery: the attributes as SQS message attributes", types == ["aggregate.changed", "file.completed"],
          str(types))
    filtered = messages(sqs, queues["selftest-changes"])
    check("the filter policy admits only its type", filtered == [{"n": 0}], str(filtered))
    # Fix 14: a form body as aws-sdk-rust encodes it (a space as %20), signed
    # over those very bytes.
    import urllib.request
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    body = ("Action=Publish&Version=2010-03-31&TopicArn=" + urllib.parse.quote(topic, safe="")
            + "&Message=" + urllib.parse.quote('{"reason": "a space"}', safe=""))
    req = AWSRequest(method="POST", url=aws.endpoint + "/", data=body.encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    creds = Credentials(aws.creds["aws_access_key_id"], aws.creds["aws_secret_access_key"])
    SigV4Auth(creds, "sns", REGION).add_auth(req)
    try:
        with urllib.request.urlopen(urllib.request.Request(req.url, data=req.body, headers=dict(req.headers))) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = f"{e.code} {e.read()[:200]!r}"
    check("a query-protocol body with %20 is judged on the bytes signed", status == 200, str(status))


def test_identity_conditions(aws):
    bucket, key = "selftest-versioned", "uploads/read.csv"
    objects = f"arn:aws:s3:::{bucket}/*"
    # IpAddress: an operator AWS evaluates and the shim does not.
    unknown = {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}
    deny = role(aws, "deny-unknown", [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": objects, "Condition": unknown}])("s3")
    got = denied(lambda: deny.get_object(Bucket=bucket, Key=key))
    check("an identity Deny whose condition operator the shim cannot evaluate denies", got == "denied", got)
    allow = role(aws, "allow-unknown", [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects, "Condition": unknown}])("s3")
    got = denied(lambda: allow.get_object(Bucket=bucket, Key=key))
    check("an identity Allow whose condition operator the shim cannot evaluate does not allow",
          got == "denied", got)
    # A known operator on a key outside the request's context.
    tagged = role(aws, "deny-unknown-key", [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": objects,
         "Condition": {"StringNotEquals": {"aws:PrincipalTag/team": "pipeline"}}}])("s3")
    got = denied(lambda: tagged.get_object(Bucket=bucket, Key=key))
    check("an identity Deny on a condition key the shim does not know denies", got == "denied", got)
    # moto read no NotResource, and counted the Deny as PERMITTED.
    outside = role(aws, "deny-not-resource", [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
        {"Effect": "Deny", "Action": ["s3:GetObject", "s3:PutObject"], "NotResource": "arn:aws:s3:::elsewhere/*"}])("s3")
    got = {"get_object": denied(lambda: outside.get_object(Bucket=bucket, Key=key)),
           "put_object": denied(lambda: outside.put_object(Bucket=bucket, Key="uploads/new.csv", Body=b"x"))}
    check("an identity Deny with NotResource denies outside it, and grants nothing",
          set(got.values()) == {"denied"}, str(got))
    tls = role(aws, "tls-only", [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": objects,
         "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
        {"Effect": "Deny", "Action": "s3:*", "Resource": objects,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}])("s3")
    got = denied(lambda: tls.get_object(Bucket=bucket, Key=key))
    check("identity conditions on aws:SecureTransport are judged (as over TLS)", got == "allowed", got)


def test_bucket_policy(aws):
    s3, bucket = aws("s3"), "selftest-policy"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    versions = {key: s3.put_object(Bucket=bucket, Key=key, Body=b"x")["VersionId"]
                for key in ("open.txt", "guarded/x.txt", "pinned/x.txt")}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        # The module's TLS-only Deny (terraform/s3.tf).
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        # A Deny the shim cannot evaluate (NotIpAddress).
        {"Sid": "DenyOutsideNetwork", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/guarded/*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}},
        # Reads of a named version only.
        {"Sid": "DenyVersionReads", "Effect": "Deny", "Principal": "*", "Action": "s3:GetObjectVersion",
         "Resource": f"arn:aws:s3:::{bucket}/pinned/*"}]}))
    got = {op: denied(lambda: getattr(s3, op)(Bucket=bucket, Key="open.txt")) for op in ("get_object", "head_object")}
    check("the bucket's TLS-only Deny (Bool aws:SecureTransport false) does not deny",
          set(got.values()) == {"allowed"}, str(got))
    got = {op: denied(lambda: getattr(s3, op)(Bucket=bucket, Key="guarded/x.txt"))
           for op in ("get_object", "head_object")}
    check("a bucket-policy Deny whose condition the shim cannot evaluate denies (GET and HEAD)",
          set(got.values()) == {"denied"}, str(got))
    key = "pinned/x.txt"
    got = {f"{op}{' VersionId' if named else ''}": denied(
        lambda: getattr(s3, op)(Bucket=bucket, Key=key, **({"VersionId": versions[key]} if named else {})))
        for op in ("get_object", "head_object") for named in (False, True)}
    check("a bucket-policy Deny of s3:GetObjectVersion denies GET and HEAD with VersionId, only",
          got == {"get_object": "allowed", "get_object VersionId": "denied",
                  "head_object": "allowed", "head_object VersionId": "denied"}, str(got))


def main():
    server = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "moto_server.py"
    with tempfile.TemporaryFile("w+") as log:
        proc, endpoint = start(server, log)
        try:
            if endpoint is None:
                log.seek(0)
                check(f"{server.name} starts", False, log.read()[-2000:])
            else:
                aws = bootstrap(endpoint)
                for test in (test_notifications, test_versioned_reads, test_stream_reads, test_feed_topic,
                             test_identity_conditions, test_bucket_policy):
                    try:
                        test(aws)
                    except Exception as e:  # a setup call failed: the test's checks did not run
                        check(test.__name__, False, f"{type(e).__name__}: {e}")
        finally:
            stop(proc)
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
