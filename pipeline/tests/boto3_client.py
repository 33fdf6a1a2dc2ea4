"""A client that is not ours: boto3 uploads a CSV to a `pipeline up` stack
and reads the feed until the file's file.completed arrives.

Usage: boto3_client.py UP_JSON CSV_PATH KEY
Prints one JSON object: the file.completed message and how many
aggregate.changed messages came before it.
"""
import json
import sys
import time

import boto3
from botocore.config import Config

up = json.load(open(sys.argv[1]))
path, key = sys.argv[2], sys.argv[3]
creds = dict(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="localsecret")
s3 = boto3.client("s3", endpoint_url=up["s3"], config=Config(s3={"addressing_style": "path"}), **creds)
sqs = boto3.client("sqs", endpoint_url=up["sqs"], **creds)

bucket = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("csv-pipeline-uploads")][0]
s3.upload_file(path, bucket, key)
feed = sqs.get_queue_url(QueueName="csv-pipeline-feed")["QueueUrl"]
changes, deadline = 0, time.time() + 180
while time.time() < deadline:
    for m in sqs.receive_message(QueueUrl=feed, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", []):
        sqs.delete_message(QueueUrl=feed, ReceiptHandle=m["ReceiptHandle"])
        body = json.loads(m["Body"])
        if body["type"] == "aggregate.changed":
            changes += 1
        elif body["type"] == "file.completed" and key in body["keys"]:
            print(json.dumps({"completed": body, "aggregate_changes": changes}))
            sys.exit(0)
print("timed out waiting for file.completed", file=sys.stderr)
sys.exit(1)
