"""Tests of check.py's IAM machinery, offline: the policy evaluator, the
call-to-(action, resource) mapping, the source scan, the platform calls, and
check_iam on a fixture (the module's role policies as Terraform renders them,
written out by hand, with a synthetic calls record). Plain asserts; run by
`check.py selftest` (the static stage of terraform/test/run.sh).
"""
import contextlib
import copy
import io
import pathlib
import sys
import tempfile
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check  # noqa: E402

A, R = "123456789012", "us-east-1"
P = "csv-pipeline"
ROLE = {fn: f"arn:aws:iam::{A}:role/{P}-{fn}" for fn in check.FUNCTIONS}
SESSION = {fn: f"arn:aws:sts::{A}:assumed-role/{P}-{fn}/run" for fn in check.FUNCTIONS}
BUCKET = f"{P}-uploads-{A}"
EVENTS, AGGREGATES = f"arn:aws:dynamodb:{R}:{A}:table/{P}-events", f"arn:aws:dynamodb:{R}:{A}:table/{P}-aggregates"
STREAM = f"{EVENTS}/stream/2025-01-01T00:00:00.000"
Q = {name: f"arn:aws:sqs:{R}:{A}:{P}-{name}" for name in ["ingest", "feed", "projector-failures", "consumer"]}
TOPIC = f"arn:aws:sns:{R}:{A}:{P}-feed"
READ_MODEL = f"arn:aws:dynamodb:{R}:{A}:table/{P}-read-model"
URL = {name: f"https://sqs.{R}.amazonaws.com/{A}/{P}-{name}" for name in Q}
LOGS = {fn: f"arn:aws:logs:{R}:{A}:log-group:/aws/lambda/{P}-{fn}" for fn in check.FUNCTIONS}


def ctx(fn="ingest", **keys):
    c = check.role_session_context(ROLE[fn], SESSION[fn], A, R)
    c.keys.update(keys)
    return c


def doc(*sts):
    return {"Version": "2012-10-17", "Statement": list(sts)}


def allow(actions, resources, **extra):
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


# ------------------------------------------------------------- evaluator


def test_allow_and_implicit_deny():
    pol = [("p", doc(allow("dynamodb:GetItem", EVENTS)))]
    assert check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed
    # case-insensitive action, case-sensitive resource
    assert check.evaluate("DynamoDB:getitem", EVENTS, ctx(), pol).allowed
    assert not check.evaluate("dynamodb:GetItem", EVENTS.upper(), ctx(), pol).allowed
    d = check.evaluate("dynamodb:PutItem", EVENTS, ctx(), pol)
    assert not d.allowed and not d.denied_by and "implicit" in d.reason()
    assert not check.evaluate("dynamodb:GetItem", AGGREGATES, ctx(), pol).allowed


def test_wildcards():
    assert check.wildcard("s3:Get*", "s3:GetObjectVersion", ignore_case=True)
    assert check.wildcard("arn:aws:s3:::b/uploads/*", "arn:aws:s3:::b/uploads/a/b.csv")
    assert not check.wildcard("arn:aws:s3:::b/uploads/*", "arn:aws:s3:::b/other/a.csv")
    assert check.wildcard("sqs:?endMessage", "sqs:SendMessage")
    assert not check.wildcard("sqs:?endMessage", "sqs:SSendMessage")
    # regex metacharacters are literal
    assert not check.wildcard("arn:aws:s3:::b.c/*", "arn:aws:s3:::bxc/k")
    # a resource-less action is checked against '*', which only '*' matches
    assert not check.wildcard("arn:aws:dynamodb:*", "*") and check.wildcard("*", "*")


def test_explicit_deny_wins():
    pol = [("p", doc(allow("s3:*", "*"), {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}))]
    d = check.evaluate("s3:GetObject", f"arn:aws:s3:::{BUCKET}/k", ctx(), pol)
    assert not d.allowed and d.denied_by
    assert check.evaluate("s3:GetObjectVersion", f"arn:aws:s3:::{BUCKET}/k", ctx(), pol).allowed


def test_not_action_not_resource():
    pol = [("p", doc({"Effect": "Deny", "NotAction": "dynamodb:GetItem", "Resource": EVENTS},
                     allow("dynamodb:*", EVENTS), allow("dynamodb:*", AGGREGATES)))]
    assert check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed
    assert not check.evaluate("dynamodb:PutItem", EVENTS, ctx(), pol).allowed
    assert check.evaluate("dynamodb:PutItem", AGGREGATES, ctx(), pol).allowed
    pol = [("p", doc({"Effect": "Deny", "Action": "*", "NotResource": EVENTS}, allow("*", "*")))]
    assert check.evaluate("dynamodb:PutItem", EVENTS, ctx(), pol).allowed
    assert not check.evaluate("dynamodb:PutItem", AGGREGATES, ctx(), pol).allowed


TLS_DENY = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def test_bucket_policy_tls_deny():
    obj = f"arn:aws:s3:::{BUCKET}/uploads/a.csv"
    pol = [("p", doc(allow("s3:GetObjectVersion", f"arn:aws:s3:::{BUCKET}/uploads/*")))]
    bucket_policy = [("b", doc(TLS_DENY))]
    assert check.evaluate("s3:GetObjectVersion", obj, ctx(), pol, bucket_policy).allowed
    # over plain HTTP the Deny applies
    assert not check.evaluate("s3:GetObjectVersion", obj, ctx(**{"aws:securetransport": ["false"]}), pol, bucket_policy).allowed
    # not knowing the transport, the Deny applies (fail closed)
    unknown = ctx()
    del unknown.keys["aws:securetransport"]
    d = check.evaluate("s3:GetObjectVersion", obj, unknown, pol, bucket_policy)
    assert not d.allowed and "could not be evaluated" in d.reason()
    # JSON true/false in a policy read as strings
    bool_deny = dict(TLS_DENY, Condition={"Bool": {"aws:SecureTransport": False}})
    assert check.evaluate("s3:GetObjectVersion", obj, ctx(), pol, [("b", doc(bool_deny))]).allowed


def test_unknown_condition_fails_closed():
    cond = {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    pol = [("p", doc(allow("dynamodb:GetItem", EVENTS, Condition=cond)))]
    assert not check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed
    pol = [("p", doc(allow("dynamodb:GetItem", EVENTS),
                     {"Effect": "Deny", "Action": "dynamodb:GetItem", "Resource": EVENTS, "Condition": cond}))]
    assert not check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed
    # an unknown key, and a policy variable, likewise
    cond = {"StringEquals": {"aws:PrincipalTag/team": "data"}}
    assert not check.evaluate("dynamodb:GetItem", EVENTS, ctx(), [("p", doc(allow("dynamodb:GetItem", EVENTS, Condition=cond)))]).allowed
    pol = [("p", doc(allow("dynamodb:GetItem", "arn:aws:dynamodb:*:*:table/${aws:username}")))]
    assert not check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed
    # a known-false test decides the block even beside an unknown one
    cond = {"Bool": {"aws:SecureTransport": "false"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
    pol = [("p", doc(allow("dynamodb:GetItem", EVENTS),
                     {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": cond}))]
    assert check.evaluate("dynamodb:GetItem", EVENTS, ctx(), pol).allowed


def test_condition_operators():
    c = ctx()
    t = check.condition_test
    assert t("StringEquals", "aws:PrincipalArn", ROLE["ingest"], c) is True
    assert t("StringNotEquals", "aws:PrincipalArn", ROLE["projector"], c) is True
    assert t("StringLike", "aws:principalarn", f"arn:aws:iam::{A}:role/{P}-*", c) is True
    assert t("StringEqualsIgnoreCase", "aws:PrincipalType", "assumedrole", c) is True
    assert t("ArnLike", "aws:PrincipalArn", f"arn:aws:iam::*:role/{P}-ingest", c) is True
    assert t("ArnEquals", "aws:PrincipalArn", f"arn:aws:iam::{A}:role/other", c) is False
    assert t("ArnNotLike", "aws:PrincipalArn", f"arn:aws:iam::{A}:role/other", c) is True
    assert t("StringEquals", "aws:PrincipalAccount", [A, "000000000000"], c) is True  # values: OR
    # absent keys: positive false, negated true, IfExists true, Null true
    assert t("ArnEquals", "aws:SourceArn", "arn:aws:s3:::b", c) is False
    assert t("StringNotEquals", "aws:SourceAccount", A, c) is True
    assert t("StringEqualsIfExists", "aws:SourceAccount", "x", c) is True
    assert t("Null", "aws:SourceArn", "true", c) is True
    assert t("Null", "aws:SecureTransport", "true", c) is False
    assert t("ForAllValues:StringEquals", "aws:CalledVia", "x", c) is True
    assert t("ForAnyValue:StringEquals", "aws:CalledVia", "x", c) is False
    # numbers, sets, unknowns
    assert t("NumericLessThan", "s3:max-keys", "10", ctx(**{"s3:max-keys": ["5"]})) is True
    assert t("NumericLessThan", "s3:max-keys", "10", ctx(**{"s3:max-keys": ["x"]})) is None
    multi = ctx(**{"dynamodb:attributes": ["a", "b"]})
    assert t("ForAllValues:StringEquals", "dynamodb:Attributes", ["a", "b", "c"], multi) is True
    assert t("ForAllValues:StringEquals", "dynamodb:Attributes", ["a"], multi) is False
    assert t("ForAnyValue:StringEquals", "dynamodb:Attributes", ["b"], multi) is True
    assert t("StringEquals", "dynamodb:Attributes", "a", multi) is None
    assert t("DateGreaterThan", "aws:CurrentTime", "2020-01-01T00:00:00Z", c) is None
    assert t("StringEquals", "s3:versionid", "v1", ctx(**{"s3:versionid": [check.UNKNOWN]})) is None
    assert t("Null", "s3:versionid", "false", ctx(**{"s3:versionid": [check.UNKNOWN]})) is True


def test_resource_policies_principals():
    queue_policy = [("q", doc({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                               "Action": "sqs:SendMessage", "Resource": Q["ingest"],
                               "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{BUCKET}"}}}))]
    # the S3 service's grant is no grant to a role
    assert not check.evaluate("sqs:SendMessage", Q["ingest"], ctx("projector"), [], queue_policy).allowed
    for principal in [ROLE["projector"], SESSION["projector"], "*", {"AWS": ["x", ROLE["projector"]]}]:
        p = principal if principal == "*" else principal if isinstance(principal, dict) else {"AWS": principal}
        rp = [("q", doc({"Effect": "Allow", "Principal": p, "Action": "sqs:SendMessage", "Resource": Q["ingest"]}))]
        d = check.evaluate("sqs:SendMessage", Q["ingest"], ctx("projector"), [], rp)
        assert d.allowed and d.resource_allows and not d.units, principal
    # an Allow to the account delegates to identity policies; a Deny to it applies
    for root in [A, f"arn:aws:iam::{A}:root"]:
        rp = [("q", doc({"Effect": "Allow", "Principal": {"AWS": root}, "Action": "sqs:SendMessage", "Resource": Q["ingest"]}))]
        assert not check.evaluate("sqs:SendMessage", Q["ingest"], ctx("projector"), [], rp).allowed
        rp = [("q", doc({"Effect": "Deny", "Principal": {"AWS": root}, "Action": "sqs:SendMessage", "Resource": Q["ingest"]}))]
        ident = [("p", doc(allow("sqs:SendMessage", Q["ingest"])))]
        assert not check.evaluate("sqs:SendMessage", Q["ingest"], ctx("projector"), ident, rp).allowed
    # NotPrincipal: naming the role alone does not exclude its sessions
    ident = [("p", doc(allow("sqs:SendMessage", Q["ingest"])))]
    for listed, excluded in [([ROLE["projector"]], False), ([ROLE["projector"], SESSION["projector"]], True)]:
        rp = [("q", doc({"Effect": "Deny", "NotPrincipal": {"AWS": listed}, "Action": "sqs:*", "Resource": Q["ingest"]}))]
        assert check.evaluate("sqs:SendMessage", Q["ingest"], ctx("projector"), ident, rp).allowed == excluded


def test_units():
    pol = [("p", doc(allow(["dynamodb:PutItem", "dynamodb:GetItem"], [EVENTS, AGGREGATES])))]
    d = check.evaluate("dynamodb:GetItem", AGGREGATES, ctx(), pol)
    assert d.units == {("p", 0, "dynamodb:GetItem", AGGREGATES)}


# ---------------------------------------------------- the call mapping

W = check.Where(A, R, streams=(STREAM,))


def mapped(service, op, **params):
    return [(a.action, a.resource) for a in check.map_call({"service": service, "operation": op, "params": params}, W, "t")]


def unmapped(service, op, **params):
    try:
        mapped(service, op, **params)
    except check.Unmapped as e:
        return str(e)
    raise AssertionError(f"{service} {op} {params} mapped")


def test_mapping():
    obj = f"arn:aws:s3:::{BUCKET}/uploads/a b.csv"
    s3 = dict(Bucket=BUCKET, Key="uploads/a b.csv")
    assert mapped("S3", "GetObject", **s3, query=["versionId"], headers=["range"]) == [("s3:GetObjectVersion", obj)]
    assert mapped("S3", "HeadObject", **s3, query=["versionId"], headers=["x-amz-checksum-mode"]) == [("s3:GetObjectVersion", obj)]
    assert mapped("S3", "GetObject", **s3, query=[], headers=[]) == [("s3:GetObject", obj)]
    assert mapped("S3", "HeadObject", **s3) == [("s3:GetObject", obj)]
    assert mapped("S3", "PutObject", **s3) == [("s3:PutObject", obj)]
    assert "not derived" in unmapped("S3", "UploadPartCopy", **s3, headers=["x-amz-copy-source"])
    unmapped("S3", "GetObject", **s3, query=["attributes"])
    unmapped("S3", "GetObjectTagging", **s3, query=["tagging", "versionId"])
    unmapped("S3", "ListObjectsV2", Bucket=BUCKET)  # s3:ListBucket: not named after it
    unmapped("S3", "HeadBucket", Bucket=BUCKET)
    t = f"{P}-events"
    assert mapped("DynamoDB", "PutItem", TableName=t) == [("dynamodb:PutItem", EVENTS)]
    assert mapped("DynamoDB", "Query", TableName=t, IndexName="by-file") == [("dynamodb:Query", f"{EVENTS}/index/by-file")]
    assert sorted(mapped("DynamoDB", "BatchGetItem", RequestItems=[f"{P}-aggregates", t])) == [
        ("dynamodb:BatchGetItem", AGGREGATES), ("dynamodb:BatchGetItem", EVENTS)]
    assert mapped("DynamoDB", "TransactWriteItems", TransactItems=[["Put", f"{P}-aggregates"], ["ConditionCheck", t]]) == [
        ("dynamodb:PutItem", AGGREGATES), ("dynamodb:ConditionCheckItem", EVENTS)]
    unmapped("DynamoDB", "TransactWriteItems")
    unmapped("DynamoDB", "ExecuteStatement")
    unmapped("DynamoDB", "PutItem")  # no table: no resource
    assert mapped("DynamoDB Streams", "DescribeStream", StreamArn=STREAM) == [("dynamodb:DescribeStream", STREAM)]
    assert mapped("dynamodb streams", "GetShardIterator", StreamArn=STREAM) == [("dynamodb:GetShardIterator", STREAM)]
    assert mapped("DynamoDB Streams", "GetRecords") == [("dynamodb:GetRecords", STREAM)]
    assert mapped("DynamoDB Streams", "ListStreams", TableName=t) == [("dynamodb:ListStreams", "*")]
    no_stream = check.Where(A, R)
    try:
        check.map_call({"service": "DynamoDB Streams", "operation": "GetRecords", "params": {}}, no_stream, "t")
        raise AssertionError("GetRecords without a stream mapped")
    except check.Unmapped:
        pass
    assert mapped("SQS", "SendMessageBatch", QueueUrl=URL["feed"]) == [("sqs:SendMessage", Q["feed"])]
    assert mapped("SQS", "DeleteMessageBatch", QueueUrl=f"http://127.0.0.1:5000/{A}/{P}-ingest") == [("sqs:DeleteMessage", Q["ingest"])]
    assert mapped("SQS", "ChangeMessageVisibilityBatch", QueueUrl=URL["ingest"]) == [("sqs:ChangeMessageVisibility", Q["ingest"])]
    assert mapped("SQS", "ReceiveMessage", QueueUrl=URL["ingest"]) == [("sqs:ReceiveMessage", Q["ingest"])]
    assert mapped("SQS", "GetQueueAttributes", QueueUrl=f"https://sqs.eu-west-1.amazonaws.com/{A}/q") == [
        ("sqs:GetQueueAttributes", f"arn:aws:sqs:eu-west-1:{A}:q")]
    assert mapped("SNS", "PublishBatch", TopicArn=TOPIC) == [("sns:Publish", TOPIC)]
    assert mapped("SNS", "Publish", TopicArn=TOPIC) == [("sns:Publish", TOPIC)]
    assert mapped("SNS", "Subscribe", TopicArn=TOPIC) == [("sns:Subscribe", TOPIC)]
    assert mapped("STS", "GetCallerIdentity") == []
    assert "operation" in unmapped("SQS", "Frobnicate", QueueUrl=URL["feed"])
    assert "service" in unmapped("Nope", "GetThing")
    unmapped("SQS", "SendMessage", QueueUrl="not a url")


# ------------------------------------------------------ the source scan


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def op_file(service, op):
    return f'cfg.store_put(::aws_smithy_runtime_api::client::orchestrator::Metadata::new(\n    "{op}",\n    "{service}",\n));\n'


def fake_workspace(tmp, lib_rs):
    """A workspace with one Lambda crate (ingest) using S3 and DynamoDB, a
    member crate it depends on, and a fake cargo registry."""
    root = tmp / "ws"
    write(root / "Cargo.toml", '[workspace]\nmembers = ["ingest", "common"]\n')
    write(root / "Cargo.lock", "".join(f'[[package]]\nname = "{n}"\nversion = "{v}"\n\n' for n, v in [
        ("aws-sdk-s3", "1.0.0"), ("aws-sdk-dynamodb", "1.2.0"), ("aws-sdk-sqs", "1.3.0"), ("ingest", "0.1.0"), ("common", "0.1.0")]))
    write(root / "ingest" / "Cargo.toml", '[package]\nname = "ingest"\n[dependencies]\naws-sdk-s3 = "1"\n'
          'aws-sdk-dynamodb = "1"\ncommon = { path = "../common" }\n[dev-dependencies]\naws-sdk-sqs = "1"\n')
    write(root / "ingest" / "src" / "lib.rs", lib_rs)
    write(root / "common" / "Cargo.toml", '[package]\nname = "common"\n[dependencies]\naws-sdk-dynamodb = "1"\n')
    write(root / "common" / "src" / "lib.rs", "fn f(c: &Client) { c.delete_item().table_name(t).send(); }\n")
    reg = tmp / "cargo" / "registry" / "src" / "index.crates.io-x"
    for crate, service, ops in [("aws-sdk-s3-1.0.0", "S3", ["GetObject", "HeadObject", "ListObjectsV2"]),
                                ("aws-sdk-dynamodb-1.2.0", "DynamoDB", ["PutItem", "DeleteItem", "TransactWriteItems", "Query"]),
                                ("aws-sdk-sqs-1.3.0", "SQS", ["SendMessage"])]:
        for op in ops:
            snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in op).lstrip("_").replace("v2", "_v2")
            write(reg / crate / "src" / "operation" / f"{snake}.rs", op_file(service, op))
    return root, tmp / "cargo"


def test_scan():
    lib = """
//! docs: client.query() in a comment is not a call
fn a(s3: &Client) {
    s3.get_object().bucket(b).key(k).version_id(v).send().await;
    s3.head_object()
        .bucket(b)
        .set_version_id(v)
        .send();
    // s3.list_objects_v2().send();
    let w = Put::builder().build();
    ddb.transact_write_items().set_transact_items(Some(vec![w])).send();
    ddb.put_item().table_name(t).send();
    sqs.send_message().send(); // a dev-dependency SDK: not an operation of this crate
    let m = x.get_mut();
}
"""
    with tempfile.TemporaryDirectory() as tmp:
        root, cargo = fake_workspace(pathlib.Path(tmp), lib)
        saved = check.os.environ.get("CARGO_HOME")
        check.os.environ["CARGO_HOME"] = str(cargo)
        try:
            found = check.static_calls("ingest", root)
            on_versioned = check.static_calls("ingest", root, versioned_uploads=True)
        finally:
            if saved is None:
                del check.os.environ["CARGO_HOME"]
            else:
                check.os.environ["CARGO_HOME"] = saved
    got = sorted((loc.split(":")[0].split("/")[0] + ":" + loc.split(":")[1], svc, op, str(params)) for loc, svc, op, params in found)
    assert got == sorted([
        ("ingest:4", "S3", "GetObject", "{'query': ['versionId']}"),
        ("ingest:5", "S3", "HeadObject", "{'query': ['versionId']}"),
        ("ingest:5", "S3", "HeadObject", "{}"),  # set_version_id(Option): both
        ("ingest:11", "DynamoDB", "TransactWriteItems", "{'TransactItems': [['Put', None]]}"),
        ("ingest:12", "DynamoDB", "PutItem", "{}"),
        ("common:1", "DynamoDB", "DeleteItem", "{}"),
    ]), got
    # On a bucket whose versioning is Enabled every notification names a
    # version: the Option's None branch is not reachable there.
    reads = sorted(str(params) for _, svc, op, params in on_versioned if op == "HeadObject")
    assert reads == ["{'query': ['versionId']}"], reads


def test_scan_features():
    """A kit crate with an optional SDK and a module behind a feature: the
    Lambda crate that turns the feature off scans neither."""
    with tempfile.TemporaryDirectory() as tmp:
        root, cargo = fake_workspace(pathlib.Path(tmp), "fn a(c: &Client) { c.put_item().send(); }\n")
        write(root / "Cargo.toml", '[workspace]\nmembers = ["ingest", "common", "kit", "lam"]\n'
              '[workspace.dependencies]\nkit = { path = "kit", default-features = false }\n')
        write(root / "kit" / "Cargo.toml", '[package]\nname = "kit"\n[features]\ndefault = ["loop"]\nloop = ["dep:aws-sdk-sqs"]\n'
              '[dependencies]\naws-sdk-dynamodb = "1"\naws-sdk-sqs = { version = "1", optional = true }\n')
        write(root / "kit" / "src" / "lib.rs", '#[cfg(feature = "loop")]\npub mod looping;\npub mod store;\n')
        write(root / "kit" / "src" / "store.rs", "fn s(c: &Client) { c.put_item().send(); }\n")
        write(root / "kit" / "src" / "looping.rs", "fn l(c: &Client) { c.send_message().send(); c.query().send(); }\n")
        write(root / "lam" / "Cargo.toml", '[package]\nname = "lam"\n[dependencies]\nkit = { workspace = true }\n')
        write(root / "lam" / "src" / "main.rs", "fn main() {}\n")
        write(root / "full" / "Cargo.toml", '[package]\nname = "full"\n[dependencies]\nkit = { workspace = true, features = ["loop"] }\n')
        write(root / "full" / "src" / "main.rs", "fn main() {}\n")
        saved = check.os.environ.get("CARGO_HOME")
        check.os.environ["CARGO_HOME"] = str(cargo)
        try:
            lean = sorted({op for _, _, op, _ in check.static_calls("lam", root)})
            write(root / "Cargo.toml", '[workspace]\nmembers = ["ingest", "common", "kit", "lam", "full"]\n'
                  '[workspace.dependencies]\nkit = { path = "kit", default-features = false }\n')
            (root / "Cargo.lock").write_text((root / "Cargo.lock").read_text() + '[[package]]\nname = "full"\nversion = "0.1.0"\n')
            full = sorted({op for _, _, op, _ in check.static_calls("full", root)})
        finally:
            if saved is None:
                del check.os.environ["CARGO_HOME"]
            else:
                check.os.environ["CARGO_HOME"] = saved
    assert lean == ["PutItem"], lean
    assert full == ["PutItem", "Query", "SendMessage"], full


# ---------------------------------------------------- the platform calls


PLATFORM = {
    "ingest": {"mappings": [{"EventSourceArn": Q["ingest"], "OnFailure": None}],
               "log_group": f"/aws/lambda/{P}-ingest", "tracing": "Active"},
    "projector": {"mappings": [{"EventSourceArn": STREAM, "OnFailure": Q["projector-failures"]}],
                  "log_group": f"/aws/lambda/{P}-projector", "tracing": "Active"},
    "consumer": {"mappings": [{"EventSourceArn": Q["consumer"], "OnFailure": None}],
                 "log_group": f"/aws/lambda/{P}-consumer", "tracing": "Active"},
}


def test_platform():
    ingest = {(a.action, a.resource) for a in check.platform_accesses("ingest", PLATFORM["ingest"], W)}
    stream = LOGS["ingest"] + ":log-stream:" + check.LOG_STREAM
    assert ingest == {("sqs:ReceiveMessage", Q["ingest"]), ("sqs:DeleteMessage", Q["ingest"]),
                      ("sqs:GetQueueAttributes", Q["ingest"]), ("logs:CreateLogStream", stream),
                      ("logs:PutLogEvents", stream), ("xray:PutTraceSegments", "*"),
                      ("xray:PutTelemetryRecords", "*")}, ingest
    projector = {(a.action, a.resource) for a in check.platform_accesses("projector", PLATFORM["projector"], W)}
    assert {("dynamodb:DescribeStream", STREAM), ("dynamodb:GetRecords", STREAM), ("dynamodb:GetShardIterator", STREAM),
            ("dynamodb:ListStreams", "*"), ("sqs:SendMessage", Q["projector-failures"])} <= projector, projector
    passthrough = dict(PLATFORM["ingest"], tracing="PassThrough")
    assert not any(a.action.startswith("xray:") for a in check.platform_accesses("ingest", passthrough, W))
    try:
        check.platform_accesses("ingest", dict(passthrough, mappings=[{"EventSourceArn": f"arn:aws:kafka:{R}:{A}:cluster/c/x"}]), W)
        raise AssertionError("an unknown event source mapped")
    except check.Unmapped:
        pass


# ------------------------------------------------- check_iam on a fixture

# terraform/iam.tf's role policies as the module renders them (by hand).
POLICIES = {
    "ingest": doc(
        {"Sid": "ReadUploads", "Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": f"arn:aws:s3:::{BUCKET}/uploads/*"},
        {"Sid": "WriteEvents", "Effect": "Allow", "Action": ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem"], "Resource": EVENTS},
        {"Sid": "ConsumeIngestQueue", "Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:GetQueueAttributes", "sqs:DeleteMessage"], "Resource": Q["ingest"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": LOGS["ingest"] + ":*"},
        {"Sid": "Traces", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
    ),
    "projector": doc(
        {"Sid": "WriteAggregates", "Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:BatchGetItem"], "Resource": AGGREGATES},
        {"Sid": "ReadEventsStream", "Effect": "Allow", "Action": ["dynamodb:GetShardIterator", "dynamodb:GetRecords", "dynamodb:DescribeStream"], "Resource": STREAM},
        {"Sid": "ListStreams", "Effect": "Allow", "Action": "dynamodb:ListStreams", "Resource": "*"},
        {"Sid": "Feed", "Effect": "Allow", "Action": "sns:Publish", "Resource": TOPIC},
        {"Sid": "OnFailure", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": Q["projector-failures"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": LOGS["projector"] + ":*"},
        {"Sid": "Traces", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
    ),
    "consumer": doc(
        {"Sid": "WriteReadModel", "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": READ_MODEL},
        {"Sid": "ConsumeQueue", "Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], "Resource": Q["consumer"]},
        {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": LOGS["consumer"] + ":*"},
        {"Sid": "Traces", "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
    ),
}
# terraform/sns.tf's topic policy: it delegates to the account's IAM.
TOPIC_POLICY = doc({"Sid": "AccountIam", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
                    "Action": ["sns:Publish", "sns:Subscribe", "sns:GetTopicAttributes"], "Resource": TOPIC})
QUEUE_POLICY = doc({"Sid": "S3Notifications", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage", "Resource": Q["ingest"],
                    "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{BUCKET}"},
                                  "StringEquals": {"aws:SourceAccount": A}}})


def deployment(policies=POLICIES):
    return {
        "partition": "aws", "account": A, "region": R,
        "roles": {fn: {"arn": ROLE[fn], "name": f"{P}-{fn}", "policies": [(f"{P}-{fn}/{fn}", copy.deepcopy(policies[fn]))]}
                  for fn in check.FUNCTIONS},
        "resource_policies": {f"arn:aws:s3:::{BUCKET}": ("bucket policy", doc(TLS_DENY)),
                              Q["ingest"]: ("queue policy of ingest", QUEUE_POLICY),
                              TOPIC: ("topic policy of feed", TOPIC_POLICY)},
        "platform": copy.deepcopy(PLATFORM),
        "uploads_versioned": True,
    }


def call(service, op, **params):
    return {"service": service, "operation": op, "params": params}


S3_READ = dict(Bucket=BUCKET, Key="uploads/orders/a.csv", query=["versionId"])
CALLS = {
    "ingest": {"identity": SESSION["ingest"], "calls": [
        call("STS", "GetCallerIdentity"),
        call("S3", "HeadObject", **S3_READ, headers=["x-amz-checksum-mode"]),
        call("S3", "GetObject", **S3_READ, headers=["range"]),
        call("S3", "GetObject", **S3_READ, headers=[]),
        call("DynamoDB", "PutItem", TableName=f"{P}-events"),
        call("DynamoDB", "UpdateItem", TableName=f"{P}-events"),
        call("DynamoDB", "GetItem", TableName=f"{P}-events"),
        call("SQS", "ReceiveMessage", QueueUrl=URL["ingest"]),
        call("SQS", "DeleteMessageBatch", QueueUrl=URL["ingest"]),
        call("SQS", "GetQueueAttributes", QueueUrl=URL["ingest"]),
    ]},
    "projector": {"identity": SESSION["projector"], "calls": [
        call("STS", "GetCallerIdentity"),
        call("DynamoDB", "BatchGetItem", RequestItems=[f"{P}-aggregates"]),
        call("DynamoDB", "TransactWriteItems", TransactItems=[["Put", f"{P}-aggregates"]]),
        call("SNS", "PublishBatch", TopicArn=TOPIC),
        call("DynamoDB Streams", "DescribeStream", StreamArn=STREAM),
        call("DynamoDB Streams", "GetShardIterator", StreamArn=STREAM),
        call("DynamoDB Streams", "GetRecords"),
    ]},
    "consumer": {"identity": SESSION["consumer"], "calls": [
        call("STS", "GetCallerIdentity"),
        call("DynamoDB", "PutItem", TableName=f"{P}-read-model"),
        call("SQS", "ReceiveMessage", QueueUrl=URL["consumer"]),
        call("SQS", "DeleteMessageBatch", QueueUrl=URL["consumer"]),
        call("SQS", "GetQueueAttributes", QueueUrl=URL["consumer"]),
    ]},
}


def run_check_iam(dep, calls):
    """check_iam's FAIL lines (its output captured)."""
    check.failures.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        check.check_iam(dep, calls, root=None)
    found = list(check.failures)
    check.failures.clear()
    return found


def test_check_iam_fixture_passes():
    found = run_check_iam(deployment(), CALLS)
    assert found == [], found


def test_check_iam_finds():
    # a grant no call uses; and the old ListStreams grant on the stream's ARNs
    pol = copy.deepcopy(POLICIES)
    pol["ingest"]["Statement"][1]["Action"].append("dynamodb:DeleteItem")
    pol["projector"]["Statement"][2]["Resource"] = f"{EVENTS}/stream/*"
    found = run_check_iam(deployment(pol), CALLS)
    assert any("unused grant: dynamodb:DeleteItem" in f for f in found), found
    assert any("dynamodb:ListStreams takes no resource" in f for f in found), found
    assert any("dynamodb:ListStreams on *" in f and "implicit deny" in f for f in found), found
    assert any("parliament" in f and "RESOURCE_MISMATCH" in f for f in found), found
    # a call not granted: s3:GetObject (an unversioned read)
    calls = copy.deepcopy(CALLS)
    calls["ingest"]["calls"].append(call("S3", "GetObject", Bucket=BUCKET, Key="uploads/x.csv", query=[], headers=[]))
    found = run_check_iam(deployment(), calls)
    assert any("s3:GetObject on arn:aws:s3:::" in f for f in found), found
    # the grant on another resource than the call's
    calls = copy.deepcopy(CALLS)
    calls["ingest"]["calls"].append(call("DynamoDB", "PutItem", TableName=f"{P}-aggregates"))
    found = run_check_iam(deployment(), calls)
    assert any(f"dynamodb:PutItem on {AGGREGATES}" in f for f in found), found
    # an operation the check does not know
    calls = copy.deepcopy(CALLS)
    calls["projector"]["calls"].append(call("DynamoDB", "ExecuteStatement", TableName=f"{P}-aggregates"))
    found = run_check_iam(deployment(), calls)
    assert any("ExecuteStatement" in f for f in found), found
    # wildcards
    pol = copy.deepcopy(POLICIES)
    pol["ingest"]["Statement"].append(allow("sqs:*", Q["ingest"]))
    pol["ingest"]["Statement"].append(allow("dynamodb:Query", "*"))
    found = run_check_iam(deployment(pol), CALLS)
    assert any("wildcard action sqs:*" in f for f in found), found
    assert any("'*' resource for dynamodb:Query" in f for f in found), found
    # a Deny in the role policy, and a resource policy's Deny, are applied
    pol = copy.deepcopy(POLICIES)
    pol["projector"]["Statement"].append({"Effect": "Deny", "Action": "sns:Publish", "Resource": TOPIC})
    found = run_check_iam(deployment(pol), CALLS)
    assert any(f"sns:Publish on {TOPIC}" in f and "explicitly denied" in f for f in found), found
    # SNS's default topic policy allows every principal of the account
    # (Principal "*"): a publish it allows is not the role's own grant.
    dep = deployment()
    dep["resource_policies"][TOPIC] = ("default topic policy", doc({
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "SNS:Publish", "Resource": TOPIC}))
    found = run_check_iam(dep, CALLS)
    assert any("sns:Publish" in f and "resource policy" in f for f in found), found
    dep = deployment()
    dep["resource_policies"][f"arn:aws:s3:::{BUCKET}"] = ("bucket policy", doc(dict(TLS_DENY, Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
    found = run_check_iam(dep, CALLS)
    assert any("s3:GetObjectVersion" in f and "could not be evaluated" in f for f in found), found
    # The defect this check was rebuilt for: the ingest role as it was
    # (s3:GetObject only) against reads of the notified version, which AWS
    # authorizes as s3:GetObjectVersion. The old name-only check passed it.
    pol = copy.deepcopy(POLICIES)
    read = next(st for st in pol["ingest"]["Statement"] if st.get("Sid") == "ReadUploads")
    read["Action"] = "s3:GetObject"
    found = run_check_iam(deployment(pol), CALLS)
    assert any("s3:GetObjectVersion on arn:aws:s3:::" in f and "implicit deny" in f for f in found), found
    assert any("unused grant: s3:GetObject" in f for f in found), found
    # a missing role record
    found = run_check_iam(deployment(), {"ingest": CALLS["ingest"]})
    assert any("projector" in f for f in found), found


def main():
    tests = [(name, f) for name, f in sorted(globals().items()) if name.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, f in tests:
        try:
            f()
            passed += 1
        except Exception:  # noqa: BLE001 (report every test)
            failed += 1
            print(f"FAIL: {name}")
            traceback.print_exc()
    print(f"check.py selftest: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
