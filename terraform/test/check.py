"""Deployment checks against moto: bootstrap an admin, then compare what
Terraform created with the crates and with the local stack.

Usage: check.py bootstrap ENDPOINT
       check.py all ENDPOINT OUTPUTS CONTRACT AWS_RUN LOCAL_RUN LOCAL_UP_FILE
       check.py leftovers ENDPOINT
"""
import json
import pathlib
import re
import sys

import boto3
import botocore.exceptions

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGION = "us-east-1"
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def ok(msg):
    print(f"ok: {msg}")


def client(service, endpoint, **creds):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **creds)


def bootstrap(endpoint):
    """The first requests moto serves unauthenticated: an admin user for the
    operator and Terraform. Exactly 3 (INITIAL_NO_AUTH_ACTION_COUNT)."""
    creds = dict(aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam = client("iam", endpoint, **creds)
    iam.create_user(UserName="operator")
    iam.put_user_policy(
        UserName="operator",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    print(f"{key['AccessKeyId']} {key['SecretAccessKey']}")


# What each SDK operation needs in IAM (TransactWriteItems: the actions of its parts).
SDK_TO_IAM = {
    "head_object": ["s3:GetObject"],
    "get_object": ["s3:GetObject"],
    "put_object": ["s3:PutObject"],
    "put_item": ["dynamodb:PutItem"],
    "update_item": ["dynamodb:UpdateItem"],
    "get_item": ["dynamodb:GetItem"],
    "delete_item": ["dynamodb:DeleteItem"],
    "query": ["dynamodb:Query"],
    "scan": ["dynamodb:Scan"],
    "batch_get_item": ["dynamodb:BatchGetItem"],
    "batch_write_item": ["dynamodb:BatchWriteItem"],
    "send_message": ["sqs:SendMessage"],
    "send_message_batch": ["sqs:SendMessage"],
    "receive_message": ["sqs:ReceiveMessage"],
    "delete_message": ["sqs:DeleteMessage"],
}
TRANSACT_PARTS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
                  "Delete": "dynamodb:DeleteItem", "ConditionCheck": "dynamodb:ConditionCheckItem"}
# Calls the platform makes with the function's role: logs, traces, and the
# event source mapping (SQS polling; stream reading and its on-failure send).
PLATFORM = {
    "ingest": {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
               "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    "projector": {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
                  "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                  "dynamodb:ListStreams", "sqs:SendMessage"},
}


def sdk_calls(crate):
    """IAM actions for the SDK operations the crate's library and binary call."""
    actions = set()
    for path in (ROOT / crate / "src").rglob("*.rs"):
        text = path.read_text()
        for op in re.findall(r"\.\s*([a-z_0-9]+)\(\)", text):
            if op == "transact_write_items":
                for part in re.findall(r"\b(Put|Update|Delete|ConditionCheck)::builder", text):
                    actions.add(TRANSACT_PARTS[part])
            elif op in SDK_TO_IAM:
                actions.update(SDK_TO_IAM[op])
    return actions


def granted(iam, role):
    actions, resources = set(), []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        for st in doc["Statement"]:
            acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            actions.update(acts)
            resources.append((acts, res))
    if iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        fail(f"{role} has managed policies attached")
    return actions, resources


def check_iam(endpoint, out):
    iam = client("iam", endpoint)
    for fn in ["ingest", "projector"]:
        role = out[f"{fn}_role_arn"].split("/")[-1]
        actions, resources = granted(iam, role)
        need = sdk_calls(fn) | PLATFORM[fn]
        if actions != need:
            fail(f"{fn} role grants {sorted(actions - need)} beyond the code's calls, and lacks {sorted(need - actions)}")
        else:
            ok(f"{fn} role grants exactly the {len(need)} actions its code and mapping call")
        for acts, res in resources:
            if any("*" == a or a.endswith(":*") for a in acts):
                fail(f"{fn}: wildcard action {acts}")
            if "*" in res and not all(a.startswith("xray:") for a in acts):
                fail(f"{fn}: '*' resource for {acts}")


def check_env(endpoint, out, contract):
    lam = client("lambda", endpoint)
    for fn in ["ingest", "projector"]:
        conf = lam.get_function_configuration(FunctionName=out[f"{fn}_function_name"])
        got = set(conf.get("Environment", {}).get("Variables", {}))
        want = set(contract[fn]["env"])
        if got != want:
            fail(f"{fn}: Terraform sets {sorted(got - want)} that the code does not read; code reads {sorted(want - got)} that Terraform does not set")
        else:
            ok(f"{fn}: the {len(want)} variables Terraform sets are exactly those the code reads")


def assumed(endpoint, role_arn):
    c = client("sts", endpoint).assume_role(RoleArn=role_arn, RoleSessionName="negative")["Credentials"]
    return dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                aws_session_token=c["SessionToken"])


def check_denied(endpoint, out):
    """Calls just outside each role's grants, made with its credentials."""
    ingest = assumed(endpoint, out["ingest_role_arn"])
    projector = assumed(endpoint, out["projector_role_arn"])
    ingest_ddb = client("dynamodb", endpoint, **ingest)
    projector_ddb = client("dynamodb", endpoint, **projector)
    # An object that exists (S3 answers AccessDenied for a missing key too,
    # to a caller who may not list); not .csv, so it is not ingested.
    probe = f"{out['upload_prefix']}denied-check.txt"
    client("s3", endpoint).put_object(Bucket=out["bucket_name"], Key=probe, Body=b"x")
    # The control: the role that is granted it may read it.
    try:
        client("s3", endpoint, **ingest).get_object(Bucket=out["bucket_name"], Key=probe)
        ok("the ingest role may GetObject under the upload prefix (the control)")
    except botocore.exceptions.ClientError as e:
        fail(f"the ingest role could not GetObject {probe}: {e.response['Error']}")
    cases = [
        ("ingest", "PutItem on the aggregates table", "dynamodb:PutItem",
         lambda: ingest_ddb.put_item(
             TableName=out["aggregates_table_name"], Item={"pk": {"S": "x"}})),
        ("ingest", "DeleteTable on the events table", "dynamodb:DeleteTable",
         lambda: ingest_ddb.delete_table(TableName=out["events_table_name"])),
        ("projector", "PutItem on the events table", "dynamodb:PutItem",
         lambda: projector_ddb.put_item(
             TableName=out["events_table_name"], Item={"pk": {"S": "x"}, "sk": {"N": "0"}})),
        ("projector", "GetObject on the upload bucket", "s3:GetObject",
         lambda: client("s3", endpoint, **projector).get_object(Bucket=out["bucket_name"], Key=probe)),
    ]
    for role, what, action, call in cases:
        try:
            call()
            fail(f"the {role} role could do {what}")
        except botocore.exceptions.ClientError as e:
            error = e.response["Error"]
            message = error.get("Message", "")
            # AWS answers a JSON-protocol denial as AccessDeniedException; moto
            # sends its XML AccessDenied body, which botocore reports as code
            # "403" with the XML as the message. Either way: denied, by IAM,
            # for this action.
            denied = error["Code"] in ("AccessDenied", "AccessDeniedException") or (
                error["Code"] == "403" and "<Code>AccessDenied</Code>" in message)
            # S3's XML denial is "Access Denied", without the action.
            names_action = f"not authorized to perform: {action}" in message or (
                action.startswith("s3:") and message == "Access Denied")
            if denied and names_action:
                ok(f"the {role} role is denied {what} (AccessDenied for {action})")
            else:
                fail(f"{role}: {what}: expected AccessDenied for {action}, got {error}")


def canonical(value):
    return json.dumps(value, sort_keys=True)


def describe_tables(ddb, names):
    out = {}
    for role, name in names.items():
        t = ddb.describe_table(TableName=name)["Table"]
        out[role] = {
            "keys": sorted((k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]),
            "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in t["AttributeDefinitions"]),
            "billing": t.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST"),
            "stream": t.get("StreamSpecification", {}).get("StreamViewType") if t.get("StreamSpecification", {}).get("StreamEnabled") else None,
        }
    return out


def describe_queues(sqs, names):
    out = {}
    for role, name in names.items():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(a["RedrivePolicy"]) if "RedrivePolicy" in a else None
        out[role] = {
            "visibility": a.get("VisibilityTimeout"),
            "retention": a.get("MessageRetentionPeriod") if role.endswith(("dlq", "failures")) else None,
            "sse": a.get("SqsManagedSseEnabled"),
            "redrive_max": int(redrive["maxReceiveCount"]) if redrive else None,
            "redrive_to": redrive["deadLetterTargetArn"].split(":")[-1] if redrive else None,
        }
    return out


def check_same_resources(endpoint, out, contract, up):
    """Describe the deployment and a `pipeline up` stack the same way."""
    tables = {"events": out["events_table_name"], "aggregates": out["aggregates_table_name"]}
    queues = {"ingest": out["ingest_queue_name"], "ingest-dlq": out["ingest_dlq_name"], "feed": out["feed_queue_name"],
              "feed-dlq": out["feed_dlq_name"], "projector-failures": out["projector_failures_queue_name"]}
    local = dict(aws_access_key_id="local", aws_secret_access_key="localsecret")
    a_tables = describe_tables(client("dynamodb", endpoint), tables)
    l_tables = describe_tables(boto3.client("dynamodb", endpoint_url=up["dynamodb"], region_name=REGION, **local), tables)
    a_queues = describe_queues(client("sqs", endpoint), queues)
    l_queues = describe_queues(boto3.client("sqs", endpoint_url=up["sqs"], region_name=REGION, **local), queues)
    for kind, a, l in [("table", a_tables, l_tables), ("queue", a_queues, l_queues)]:
        for role in a:
            if a[role] != l[role]:
                fail(f"{kind} {role}: deployed {a[role]} != local {l[role]}")
            else:
                ok(f"{kind} {role} is the same on both: {a[role]}")
    # The notification and the mappings: the deployment's, described, against
    # what the local notifier and pollers run with (`pipeline contract`).
    s3 = client("s3", endpoint)
    conf = s3.get_bucket_notification_configuration(Bucket=out["bucket_name"])["QueueConfigurations"]
    rules = {r["Name"].lower(): r["Value"] for r in conf[0]["Filter"]["Key"]["FilterRules"]}
    want = contract["notification"]
    if len(conf) != 1 or rules != {"prefix": want["prefix"], "suffix": want["suffix"]} or not conf[0]["QueueArn"].endswith(":" + out["ingest_queue_name"]):
        fail(f"notification {conf} != local {want}")
    else:
        ok(f"S3 notifies the ingest queue of {want['prefix']}*{want['suffix']} on both")
    lam = client("lambda", endpoint)
    for fn in ["ingest", "projector"]:
        # By ARN: moto matches FunctionName literally against what the mapping
        # was created with (the module passes the ARN); AWS resolves either.
        arn = lam.get_function(FunctionName=out[f"{fn}_function_name"])["Configuration"]["FunctionArn"]
        ms = [m for m in lam.list_event_source_mappings()["EventSourceMappings"] if m["FunctionArn"] == arn]
        if len(ms) != 1:
            fail(f"{fn}: {len(ms)} event source mappings")
            continue
        m = ms[0]
        want = contract[fn]["mapping"]
        got = {
            "batch_size": m.get("BatchSize"),
            # Absent is Lambda's default, 0: the provider does not send a 0 and
            # moto then returns nothing.
            "maximum_batching_window_in_seconds": m.get("MaximumBatchingWindowInSeconds", 0),
            "function_response_types": m.get("FunctionResponseTypes"),
        }
        if fn == "ingest":
            got["maximum_concurrency"] = m.get("ScalingConfig", {}).get("MaximumConcurrency")
        else:
            got.update({
                "bisect_batch_on_function_error": m.get("BisectBatchOnFunctionError"),
                "maximum_retry_attempts": m.get("MaximumRetryAttempts"),
                "maximum_record_age_in_seconds": m.get("MaximumRecordAgeInSeconds"),
                "parallelization_factor": m.get("ParallelizationFactor"),
                "filters": [json.loads(f["Pattern"]) for f in m.get("FilterCriteria", {}).get("Filters", [])],
            })
            # Filters are alternatives: their order means nothing.
            got["filters"] = sorted(got["filters"], key=canonical)
            want = {**want, "filters": sorted(want["filters"], key=canonical)}
            dest = m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination", "")
            if not dest.endswith(":" + out["projector_failures_queue_name"]):
                fail(f"projector mapping on-failure destination {dest!r}")
        if got != want:
            fail(f"{fn} mapping: deployed {got} != local {want}")
        else:
            ok(f"{fn} mapping settings are the same on both")


def check_runs(aws_run, local_run):
    def facts(run):
        files = {f["key"]: (f["status"], f["rows"], f["accepted"], f["rejected"]) for f in run["files"]}
        aggs = {(a["dataset"], a["aggregate"], tuple(a["group"])): {k: v for k, v in a["measures"].items()
                if k not in ("first_seen", "last_seen")} for a in run["aggregates"]}
        return files, aggs
    af, aa = facts(aws_run)
    lf, la = facts(local_run)
    if af != lf:
        fail(f"file counts differ: deployed {af} local {lf}")
    else:
        ok(f"{len(af)} files: the same status and counts on the deployment and the local stack")
    # file_stats groups are keyed by file id, equal on both (same content).
    if aa != la:
        diff = [k for k in set(aa) | set(la) if aa.get(k) != la.get(k)][:5]
        fail(f"aggregates differ, e.g. {diff}")
    else:
        ok(f"{len(aa)} aggregate groups: equal on the deployment and the local stack")
    if aws_run["ingest_dead_letters"] or aws_run["stream_failures"]:
        fail("the run on the deployment dead-lettered something")


def leftovers(endpoint):
    left = {
        "tables": client("dynamodb", endpoint).list_tables()["TableNames"],
        "queues": client("sqs", endpoint).list_queues().get("QueueUrls", []),
        "buckets": [b["Name"] for b in client("s3", endpoint).list_buckets()["Buckets"]],
        "functions": [f["FunctionName"] for f in client("lambda", endpoint).list_functions()["Functions"]],
        "mappings": client("lambda", endpoint).list_event_source_mappings()["EventSourceMappings"],
        "roles": [r["RoleName"] for r in client("iam", endpoint).list_roles()["Roles"]],
        "alarms": [a["AlarmName"] for a in client("cloudwatch", endpoint).describe_alarms()["MetricAlarms"]],
        "log groups": [g["logGroupName"] for g in client("logs", endpoint).describe_log_groups()["logGroups"]],
    }
    for kind, items in left.items():
        if items:
            fail(f"terraform destroy left {kind}: {items}")
        else:
            ok(f"no {kind} left")


def main():
    cmd, endpoint = sys.argv[1], sys.argv[2]
    if cmd == "bootstrap":
        return bootstrap(endpoint)
    if cmd == "leftovers":
        leftovers(endpoint)
    elif cmd == "all":
        out = {k: v["value"] for k, v in json.loads(pathlib.Path(sys.argv[3]).read_text()).items()}
        contract = json.loads(pathlib.Path(sys.argv[4]).read_text())
        aws_run = json.loads(pathlib.Path(sys.argv[5]).read_text())
        local_run = json.loads(pathlib.Path(sys.argv[6]).read_text())
        up = json.loads(pathlib.Path(sys.argv[7]).read_text())
        check_runs(aws_run, local_run)
        check_iam(endpoint, out)
        check_env(endpoint, out, contract)
        check_denied(endpoint, out)
        check_same_resources(endpoint, out, contract, up)
    if failures:
        print(f"\n{len(failures)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
