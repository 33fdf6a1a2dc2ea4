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
3. Bucket policy conditions: moto evaluates only StringEquals (any other
   operator counts as met), with no request context, and counts an unmet
   condition as a denial; so the module's TLS-only Deny (Bool
   aws:SecureTransport false) denied every request. Here a statement applies
   only when its conditions hold for the request's context. The emulator is
   reached over plain HTTP on loopback; requests are judged as over TLS, as
   every SDK request to AWS is. Other denials stay denials.
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
"""
import copy as _copy
import json
import sys
import threading
import types

from moto.iam import access_control
from moto.awslambda import models as lambda_models
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb import responses as dynamodb_responses
from moto.sqs import models as sqs_models
from moto.s3 import models as s3_models
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


# What a request over TLS brings to a bucket policy's conditions.
CONTEXT = {"aws:securetransport": "true"}


def _holds(condition):
    """A statement's Condition block against CONTEXT: Bool and
    StringEquals(IgnoreCase); an unknown operator or key does not hold."""
    for op, tests in condition.items():
        for key, expected in tests.items():
            values = [str(v).lower() for v in (expected if isinstance(expected, list) else [expected])]
            actual = CONTEXT.get(key.lower())
            if op not in ("Bool", "StringEquals", "StringEqualsIgnoreCase") or actual not in values:
                return False
    return True


def get_permission(self, action, resource):
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    doc = json.loads(self.policy.decode())
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    # moto judges any condition but StringEquals as met, and an unmet one as
    # a denial; keep only the statements whose conditions hold, unconditioned.
    kept = []
    for st in statements:
        if _holds(st.get("Condition", {})):
            kept.append({k: v for k, v in st.items() if k != "Condition"})
    if not kept:
        return access_control.PermissionResult.NEUTRAL
    return access_control.IAMPolicy(json.dumps({**doc, "Statement": kept})).is_action_permitted(action, resource)


s3_models.FakeBucket.get_permission = get_permission



def dynamodb_resource(self):
    table = self._get_param("TableName")
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}" if table else "*"


dynamodb_responses.DynamoHandler._determine_resource = dynamodb_resource

_statement_permits = access_control.IAMPolicyStatement.is_action_permitted


def statement_is_action_permitted(self, action, resource="*", principal=None, incoming_condition_values=None):
    named = self._statement.get("Principal")
    if principal is not None and isinstance(named, dict):
        aws = named.get("AWS", [])
        aws = aws if isinstance(aws, list) else [aws]
        if "*" not in aws and principal not in aws:
            return access_control.PermissionResult.NEUTRAL
    return _statement_permits(self, action, resource, principal, incoming_condition_values)


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


if __name__ == "__main__":
    sys.exit(main())
