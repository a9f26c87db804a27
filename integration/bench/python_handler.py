"""The Python + boto3 equivalent of the audit writer, for the cold-start comparison.

What an AWS-template-style Python Lambda does at start (interpreter, boto3 import, client
creation), then the same work per event as audit-writer: a conditional, SHA-256-checksummed PUT
of the record. Speaks the Lambda Runtime API directly, as the Python runtime's bootstrap does.
"""
import json
import os
import urllib.request

import boto3

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BUCKET = os.environ["AUDIT_BUCKET"]
s3 = boto3.client("s3", config=boto3.session.Config(s3={"addressing_style": "path"}))

while True:
    with urllib.request.urlopen(f"http://{API}/2018-06-01/runtime/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    detail = event["detail"]
    body = json.dumps(detail, sort_keys=True).encode()
    key = f"bench-python/{detail['event_id']}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, IfNoneMatch="*", ChecksumAlgorithm="SHA256")
    reply = urllib.request.Request(
        f"http://{API}/2018-06-01/runtime/invocation/{request_id}/response",
        data=json.dumps({"key": key, "outcome": "written"}).encode(),
        method="POST",
    )
    urllib.request.urlopen(reply).close()
