"""A consumer of the change feed in Python (boto3), with its own queue on the
feed topic: every message is applied only if its version is newer than the
one held for its group, so duplicates and reordering are harmless.

Plain boto3 configuration: on AWS, credentials and region as usual; on the
local stack, the AWS_ENDPOINT_URL_* variables `pipeline up` prints.

Usage: feed_consumer.py QUEUE_NAME [--until-file KEY] [--check-table TABLE]
  --until-file   stop once that key's file.completed arrived and the queue is empty
  --check-table  then compare the read model with the aggregates table (exit 3 if not equal)
"""
import argparse
import json
import sys
import time

import boto3

args = argparse.ArgumentParser()
args.add_argument("queue")
args.add_argument("--until-file")
args.add_argument("--check-table")
args = args.parse_args()
sqs, sns = boto3.client("sqs"), boto3.client("sns")

# Its own queue, subscribed with raw delivery and a filter on the `type` attribute.
topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":csv-pipeline-feed"))
queue = sqs.create_queue(QueueName=args.queue)["QueueUrl"]
queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={
    "RawMessageDelivery": "true",
    "FilterPolicy": json.dumps({"type": ["aggregate.changed", "file.completed"]}),
})
print(json.dumps({"subscribed": queue}), flush=True)

model = {}  # (dataset, aggregate, group) -> (version, values)
applied = stale = poison = 0
done, deadline = args.until_file is None, time.time() + 300
while time.time() < deadline:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
    if not messages and done:
        break
    for m in messages:
        try:
            msg = json.loads(m["Body"])
            assert msg["type"] in ("aggregate.changed", "file.completed") and msg["schema_version"] in (1, 2)
        except (ValueError, KeyError, AssertionError):
            poison += 1  # not deleted: after the queue's receive limit it moves to the dead-letter queue
            continue
        if msg["type"] == "aggregate.changed":
            key = (msg["dataset"], msg["aggregate"], json.dumps(msg["group"], sort_keys=True))
            if msg["version"] > model.get(key, (0, None))[0]:
                model[key] = (msg["version"], msg["values"])
                applied += 1
            else:
                stale += 1
        elif msg["type"] == "file.completed" and args.until_file in msg["keys"]:
            done = True
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

result = {"groups": len(model), "applied": applied, "stale": stale, "poison": poison, "finished": done}
if args.check_table:
    table = {}
    for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=args.check_table, ConsistentRead=True):
        for item in page["Items"]:
            if item["kind"]["S"] == "aggregate":
                group = {k: v["S"] for k, v in item["group"]["M"].items()}
                key = (item["dataset"]["S"], item["aggregate"]["S"], json.dumps(group, sort_keys=True))
                table[key] = (int(item["version"]["N"]), {k: v["S"] for k, v in item["measures"]["M"].items()})
    result["equals_table"] = model == table
print(json.dumps(result))
sys.exit(0 if done and result.get("equals_table", True) else 3)
