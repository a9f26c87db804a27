"""The Python + boto3 equivalent of the rotation function's start, for the cold-start comparison.

What AWS's rotation templates (aws-samples/aws-secrets-manager-rotation-lambdas) do before any
step: start the interpreter, import boto3, create the Secrets Manager client, then run the guard
every step begins with (DescribeSecret; rotation enabled; the token is a version; AWSCURRENT
means done). The benchmark sends a step for a token that is already AWSCURRENT, so both sides do
exactly that and return. Speaks the Lambda Runtime API directly, as the Python bootstrap does.
"""
import json
import os
import urllib.request

import boto3

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
service_client = boto3.client("secretsmanager")

while True:
    with urllib.request.urlopen(f"http://{API}/2018-06-01/runtime/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(response.read())
    metadata = service_client.describe_secret(SecretId=event["SecretId"])
    token = event["ClientRequestToken"]
    if metadata.get("RotationEnabled") is False:
        raise ValueError("rotation disabled")
    versions = metadata["VersionIdsToStages"]
    if token not in versions:
        raise ValueError("unknown version")
    if "AWSCURRENT" not in versions[token] and "AWSPENDING" not in versions[token]:
        raise ValueError("not pending")
    reply = urllib.request.Request(
        f"http://{API}/2018-06-01/runtime/invocation/{request_id}/response",
        data=b"null",
        method="POST",
    )
    urllib.request.urlopen(reply).close()
