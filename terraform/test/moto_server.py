"""moto's server, with fixes that make its IAM enforcement judge requests as
AWS does, and its event source mappings stay out of the way. Everything else
is moto's (5.2.5; 5.1.18 behaves the same). Used by terraform/test/run.sh.

1. Signatures of bodyless requests: moto recomputes a request's SigV4
   signature from `body or data`; for a GET or DELETE of a REST-JSON service
   (Lambda's GetFunction, DeleteFunction...) the body is empty and `data`
   holds the parsed parameters, so moto hashes a payload the client never
   sent and answers 403 SignatureDoesNotMatch.
2. Actions of batch and transaction calls: moto asks for an IAM action named
   after the API call. AWS has none for these: SendMessageBatch is authorised
   as sqs:SendMessage (likewise DeleteMessageBatch, ChangeMessageVisibility-
   Batch), and TransactWriteItems as the action of each item (Put ->
   dynamodb:PutItem, ...) on that item's table.
3. Policy conditions: moto evaluates only StringEquals, with no request
   context but an AssumeRole's sts:ExternalId; any other operator, and a key
   it lacks, counts as met, and an unmet condition counts as a denial
   whatever the statement's Effect. So the module's TLS-only Deny (Bool
   aws:SecureTransport false) denied every request, in a bucket policy as in
   an identity policy. Here a statement applies only when its conditions
   hold for the request's context (Bool, String[Not]Equals[IgnoreCase], Null,
   and their ...IfExists), in identity, trust and bucket policies alike. The
   emulator is reached over plain HTTP on loopback; requests are judged as
   over TLS, as every SDK request to AWS is. (Fix 11: what it cannot judge.)
4. DynamoDB resources: moto authorises every DynamoDB call against "*", so
   a policy scoped to a table (as least privilege requires) allowed nothing.
   Calls are judged against their table's ARN (each table of a BatchGetItem
   or BatchWriteItem).
5. Trust policies: a statement naming other principals (the Lambda service)
   made moto deny, or crash on, an AssumeRole by a principal that another
   statement allows. A statement that does not name the caller does not apply.
6. Event source mappings are recorded, not run: moto cannot run the Rust
   functions (it would need Docker), yet its mappings still receive from the
   ingest queue (bumping receive counts) and empty the stream on every write.
   The pipeline's own pollers stand in for them (`run --local-handlers`).
7. Speed, not behaviour: TransactWriteItems deep-copies the table once per
   item (for its rollback), 100 copies of the aggregates table per call,
   seconds each; here each table is copied once per call. (Requests are
   served one transaction at a time by the pipeline, as the shim assumes.)
8. Speed, not behaviour: SendMessage reads the queue's ContentBasedDedup-
   lication from its full attribute set, which counts the queue's messages
   three times, so every send cost O(messages in the queue) and a feed of
   thousands unread messages grew quadratically. A standard queue has no such
   attribute; during a send it is looked up without the counts.
9. Event records: moto's S3 event record (eventVersion 2.1) has no
   object.versionId and no object.sequencer. S3 gives, in a versioning-
   enabled bucket, the version the event wrote (the ingest reads exactly
   that version, fix 10), and in every ObjectCreated and ObjectRemoved
   record a sequencer: hex that grows with each write of a key, compared
   after zero-padding. Both are added here, to records for every destination;
   an unversioned bucket's records carry no versionId, as before, and the
   s3:TestEvent sent when notifications are configured is unchanged. And the
   key is form-encoded as S3 encodes it (a space as "+"), but with "/" kept:
   moto sent "uploads/a.csv" as "uploads%2Fa.csv".
10. Reads of a version: AWS authorizes a GetObject or HeadObject that names
   a versionId as s3:GetObjectVersion on the object's ARN, not s3:GetObject;
   a role granted only s3:GetObject is denied them. moto asks the identity
   policies for s3:GetObject on a HEAD with versionId (for a GET it asks
   s3:GetObjectVersion), and asks the bucket policy about s3:GetObject for
   every GET of a key and about s3:HeadObject, an action that does not
   exist, for every HEAD (so a bucket's statements on reads never applied to
   a HEAD). Here both ask s3:GetObjectVersion when the request names a
   version, s3:GetObject when not.
11. Fail closed: moto counts a condition it cannot evaluate as met (an
   identity Allow conditioned on IpAddress, StringLike, a date... allowed
   from anywhere), and fix 3 at first dropped a statement whose condition it
   could not evaluate, Deny included (a Deny added later would have allowed
   silently). Here a condition the shim cannot judge (an operator not in fix
   3, a key outside the request's context) makes an Allow not apply and a
   Deny apply, in identity, trust and bucket policies: the emulator may be
   stricter than AWS, never more lenient. Likewise moto reads no NotResource
   and counts a statement without Resource (a trust policy's) as applying to
   any resource, as PERMITTED even when it is a Deny: NotResource is matched
   here, and a Deny that applies denies.
12. DynamoDB Streams resources: like fix 4, moto judges every Streams call
   (DescribeStream, GetShardIterator, GetRecords) against "*", so a grant
   scoped to the stream's ARN allowed none of them. They are judged against
   the stream: its StreamArn, or for GetRecords the stream its shard
   iterator belongs to (moto's iterators start with the stream ARN).
   ListStreams takes no resource in IAM, and stays "*".
13. SNS: as fixes 2 and 4 for the feed topic. moto asks for
   sns:PublishBatch, which IAM does not have (PublishBatch is authorised as
   sns:Publish), and judges every SNS call against "*", so a grant scoped to
   the topic's ARN allowed nothing. Calls that name a topic (TopicArn, or
   TargetArn) are judged against it.
14. Signatures of form-encoded requests (the query protocol: SNS): werkzeug
   parses such a body into a form and leaves moto no raw body, so moto signs
   its own re-encoding of the parameters. That matches what botocore sent but
   not what aws-sdk-rust sent (a space as %20, not +), and every PublishBatch
   whose message held a space (a failed file's reason) was refused with
   SignatureDoesNotMatch. The raw body is kept for the signature check.
15. Speed, not behaviour: ReceiveMessage checks each message it returns
   against the queue's retention by asking for the queue's attributes, which
   counts the queue's messages three times: a receive from a queue holding
   4,500 messages took 7 s, and the reference consumer's queue drained at
   five messages a second. The retention period is read directly.
"""
import copy as _copy
import json
import sys
import threading
import time
import types
from urllib.parse import parse_qs, quote_plus, urlparse

from moto.iam import access_control
from moto.awslambda import models as lambda_models
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.dynamodbstreams import responses as dynamodbstreams_responses
from moto.core import responses as core_responses
from moto.sns import responses as sns_responses
from moto.sqs import models as sqs_models
from moto.s3 import models as s3_models
from moto.s3 import notifications as s3_notifications
from moto.s3 import responses as s3_responses
from moto.server import main

_original = access_control.IAMRequestBase._create_aws_request


def _create_aws_request(self):
    if self._method in ("GET", "HEAD", "DELETE") and not self._body:
        saved, self._data = self._data, b""
        try:
            return _original(self)
        finally:
            self._data = saved
    return _original(self)


access_control.IAMRequestBase._create_aws_request = _create_aws_request

BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sns:PublishBatch": "sns:Publish",
}
TRANSACT_PARTS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
_check = access_control.IAMRequestBase.check_action_permitted


def check_action_permitted(self, resource):
    if self._action in BATCH_ACTIONS:
        self._action = BATCH_ACTIONS[self._action]
    elif self._action in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"):
        tables = json.loads(self._body or b"{}").get("RequestItems", {})
        for table in tables:
            _check(self, f"arn:aws:dynamodb:{self._region}:{self.account_id}:table/{table}")
        if tables:
            return
    elif self._action == "dynamodb:TransactWriteItems":
        items = json.loads(self._body or b"{}").get("TransactItems", [])
        # Each distinct (action, table) once: a transaction holds up to 100 items.
        needed = {(TRANSACT_PARTS[kind], op["TableName"]) for item in items for kind, op in item.items()}
        for action, table in sorted(needed):
            self._action = action
            _check(self, f"arn:aws:dynamodb:{self._region}:{self.account_id}:table/{table}")
        if needed:
            return
    return _check(self, resource)


access_control.IAMRequestBase.check_action_permitted = check_action_permitted


# What a request over TLS brings to a policy's conditions (keys lower-cased,
# as condition keys are case-insensitive). Any other key is unknown here.
CONTEXT = {"aws:securetransport": "true"}
# The operators evaluated here, each on a key's one value; any other
# (IpAddress, StringLike, Date..., ForAnyValue:...) is unknown here.
OPERATORS = {
    "Bool": lambda actual, values: actual.lower() in [v.lower() for v in values],
    "StringEquals": lambda actual, values: actual in values,
    "StringNotEquals": lambda actual, values: actual not in values,
    "StringEqualsIgnoreCase": lambda actual, values: actual.lower() in [v.lower() for v in values],
    "StringNotEqualsIgnoreCase": lambda actual, values: actual.lower() not in [v.lower() for v in values],
    # The key is present (every key of the context is): Null holds for "false".
    "Null": lambda actual, values: "false" in [v.lower() for v in values],
}


def _holds(condition, context):
    """A statement's Condition block against the request's context: True,
    False, or None when the shim cannot tell (an operator or a key it does
    not know). One known-unmet test decides False whatever the others."""
    verdict = True
    for op, tests in condition.items():
        # ...IfExists on a key that exists is the operator itself.
        test = OPERATORS.get(op[: -len("IfExists")] if op.endswith("IfExists") else op)
        for key, expected in tests.items():
            actual = context.get(key.lower())
            if test is None or actual is None:
                verdict = None
                continue
            values = expected if isinstance(expected, list) else [expected]
            # JSON true/false as AWS reads them: "true"/"false".
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
            if not test(actual, values):
                return False
    return verdict


def dynamodb_resource(self):
    table = self._get_param("TableName")
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}" if table else "*"


dynamodb_responses.DynamoHandler._determine_resource = dynamodb_resource


def dynamodbstreams_resource(self):
    arn = self._get_param("StreamArn")
    if arn:
        return arn
    iterator = self._get_param("ShardIterator")
    return iterator.split("|", 1)[0] if iterator else "*"


dynamodbstreams_responses.DynamoDBStreamsHandler._determine_resource = dynamodbstreams_resource


_setup_class = core_responses.BaseResponse.setup_class


def setup_class(self, request, *args, **kwargs):
    # Read (and cache) the raw body before werkzeug parses the form from it.
    form = (request.content_type or "").startswith("application/x-www-form-urlencoded")
    raw = request.get_data(cache=True) if form else None
    out = _setup_class(self, request, *args, **kwargs)
    if form and not self.raw_body:
        self.raw_body = raw
    return out


core_responses.BaseResponse.setup_class = setup_class


def sns_resource(self):
    return self._get_param("TopicArn") or self._get_param("TargetArn") or "*"


sns_responses.SNSResponse._determine_resource = sns_resource

_statement_permits = access_control.IAMPolicyStatement.is_action_permitted
NEUTRAL = access_control.PermissionResult.NEUTRAL


def statement_is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    st = self._statement
    # Fix 5: a trust policy statement that does not name the caller.
    named = st.get("Principal")
    if principal is not None and isinstance(named, dict):
        aws = named.get("AWS", [])
        aws = aws if isinstance(aws, list) else [aws]
        if "*" not in aws and principal not in aws:
            return NEUTRAL
    deny = st.get("Effect") == "Deny"
    # Fixes 3 and 11: the conditions, against the request's context (and
    # sts:ExternalId of an AssumeRole). A condition the shim cannot judge
    # fails closed: an Allow does not apply, a Deny does.
    if "Condition" in st:
        context = {**CONTEXT, **{k.lower(): v for k, v in (incoming_condition_values or {}).items()}}
        held = _holds(st["Condition"], context)
        if held is False or (held is None and not deny):
            return NEUTRAL
        st = {k: v for k, v in st.items() if k != "Condition"}
    # Fix 11: moto reads no NotResource; it then takes a statement without
    # Resource for a trust policy's, which applies whatever the resource.
    if "NotResource" in st and "Resource" not in st:
        excluded = st["NotResource"] if isinstance(st["NotResource"], list) else [st["NotResource"]]
        if any(access_control.IAMPolicyStatement._match(p, resource) for p in excluded):
            return NEUTRAL
        st = {**{k: v for k, v in st.items() if k != "NotResource"}, "Resource": "*"}
    result = _statement_permits(access_control.IAMPolicyStatement(st), action, resource, principal,
                                incoming_condition_values)
    # moto answers PERMITTED for any statement without Resource (a trust
    # policy's), Deny included: a Deny that applies denies.
    if deny and result == access_control.PermissionResult.PERMITTED:
        return access_control.PermissionResult.DENIED
    return result


access_control.IAMPolicyStatement.is_action_permitted = statement_is_action_permitted


_create_esm = lambda_models.LambdaBackend.create_event_source_mapping


def create_event_source_mapping(self, spec):
    esm = _create_esm(self, spec)
    for queue in sqs_models.sqs_backends[self.account_id][self.region_name].queues.values():
        queue.lambda_event_source_mappings.pop(esm.function_arn, None)
    for table in dynamodb_models.dynamodb_backends[self.account_id][self.region_name].tables.values():
        table.lambda_event_source_mappings.pop(esm.function_arn, None)
    return esm


lambda_models.LambdaBackend.create_event_source_mapping = create_event_source_mapping


_transact = dynamodb_models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    copies = {}

    def deepcopy(obj, memo=None):
        if isinstance(obj, dynamodb_models.Table):
            if id(obj) not in copies:
                copies[id(obj)] = _copy.deepcopy(obj)
            return copies[id(obj)]
        return _copy.deepcopy(obj, memo)

    dynamodb_models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=_copy.copy)
    try:
        return _transact(self, transact_items)
    finally:
        dynamodb_models.copy = _copy


dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


_queue_attributes = sqs_models.Queue.attributes.fget
_send_message = sqs_models.SQSBackend.send_message
_sending = threading.local()


def queue_attributes(self):
    if getattr(_sending, "active", False) and not self.fifo_queue:
        return {}  # what a standard queue holds of ContentBasedDeduplication
    return _queue_attributes(self)


def send_message(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


sqs_models.Queue.attributes = property(queue_attributes)
sqs_models.SQSBackend.send_message = send_message


def is_message_valid_based_on_retention_period(self, queue_name, message):
    retention = int(self.get_queue(queue_name).message_retention_period)
    return retention + message.sent_timestamp / 1000 > time.time()


sqs_models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


# Fix 9: what S3 puts in an event record that moto leaves out.
_s3_event = s3_notifications._get_s3_event
_send_event = s3_notifications.send_event
_event = threading.local()
_sequencer_lock = threading.Lock()
_last_sequencer = 0


def _next_sequencer():
    """S3's sequencer: hex that grows with each PUT or DELETE of a key (here,
    of any key), to be compared after zero-padding to equal length."""
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:018X}"


def send_event(account_id, event_name, bucket, key):
    # One sequencer per event, shared by each notification it matches.
    writes = event_name.startswith(("s3:ObjectCreated:", "s3:ObjectRemoved:"))
    _event.sequencer = _next_sequencer() if writes else None
    try:
        return _send_event(account_id, event_name, bucket, key)
    finally:
        _event.sequencer = None


def s3_event(event_name, bucket, key, notification_id):
    event = _s3_event(event_name, bucket, key, notification_id)
    obj = event["Records"][0]["s3"]["object"]
    obj["key"] = quote_plus(key.name, safe="/")  # as S3 does; moto sent "/" as %2F
    if bucket.is_versioned and key.version_id:
        obj["versionId"] = key.version_id  # the version this event wrote
    if getattr(_event, "sequencer", None):
        obj["sequencer"] = _event.sequencer
    return event


s3_notifications._get_s3_event = s3_event
s3_notifications.send_event = send_event


# Fix 10: a read of a named version is s3:GetObjectVersion, in the identity
# check (moto names a GET with versionId so, a HEAD not) and in the bucket
# policy's (which moto asks about s3:GetObject, and s3:HeadObject, for any).
_set_action = s3_responses.S3Response._set_action
_key_response = s3_responses.S3Response._key_response
_bucket_permission = s3_models.FakeBucket.get_permission
_object_read = threading.local()  # the read a GET or HEAD of a key is


def set_action(self, action_resource_type, method, querystring):
    _set_action(self, action_resource_type, method, querystring)
    if action_resource_type == "KEY" and self.data["Action"] == "GetObject" and "versionId" in querystring:
        self.data["Action"] = "GetObjectVersion"


def object_request(self, request, full_url):
    if request.method in ("GET", "HEAD"):
        query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
        _object_read.action = "s3:GetObjectVersion" if "versionId" in query else "s3:GetObject"
    try:
        return _key_response(self, request, full_url)
    finally:
        _object_read.action = None


def get_permission(self, action, resource):
    read = getattr(_object_read, "action", None)
    if read and action in ("s3:GetObject", "s3:HeadObject"):
        action = read
    return _bucket_permission(self, action, resource)


s3_responses.S3Response._set_action = set_action
s3_responses.S3Response._key_response = object_request
s3_models.FakeBucket.get_permission = get_permission


if __name__ == "__main__":
    sys.exit(main())
