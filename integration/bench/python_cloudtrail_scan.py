"""The plain-Python baseline of the CloudTrail log-file benchmark: what a team would write first.

gunzip, json.load of the whole file, then the same rules as keyward's shipped rules file
(functions/anomaly-forwarder/rules/default.yaml), written out by hand. Prints one JSON line with
the same fields as integration/src/bin/scan_logfile.rs.
"""
import gzip
import ipaddress
import json
import resource
import sys
import time

started = time.perf_counter()
SM = "secretsmanager.amazonaws.com"


def denied(code):
    code = (code or "").lower()
    return "accessdenied" in code or "unauthorized" in code or code == "forbidden"


def actor(identity):
    kind = identity.get("type", "")
    issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
    if kind in ("AssumedRole", "Role", "FederatedUser") and issuer:
        name = issuer.get("userName", "")
        if name.startswith("AWSReservedSSO_") and ":" in identity.get("principalId", ""):
            return identity["principalId"].split(":", 1)[1]
        if name:
            return name
    if kind == "Root":
        return "root"
    return identity.get("userName") or identity.get("arn") or identity.get("invokedBy") or ""


def public(policy):
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for s in statements:
        p = s.get("Principal")
        everyone = p == "*" or (isinstance(p, dict) and (p.get("AWS") == "*" or "*" in (p.get("AWS") or [])))
        cond = " ".join(k.lower() for v in (s.get("Condition") or {}).values() for k in v)
        if s.get("Effect") == "Allow" and everyone and "aws:principalorgid" not in cond and "aws:source" not in cond:
            return True
    return False


with gzip.open(sys.argv[1], "rt") as f:
    records = json.load(f)["Records"]

seen_ids, counts, distinct, first_seen = set(), {}, {}, set()
duplicates = 0
by_rule = {}


def alert(rule):
    by_rule[rule] = by_rule.get(rule, 0) + 1


for r in records:
    if r.get("eventID") in seen_ids:
        duplicates += 1
        continue
    seen_ids.add(r.get("eventID"))
    ident = r.get("userIdentity") or {}
    ok = "errorCode" not in r and "errorMessage" not in r
    name = r.get("eventName")
    who = actor(ident)
    if ident.get("type") == "Root" and "invokedBy" not in ident and r.get("eventType") != "AwsServiceEvent" and name != "CreateServiceLinkedRole" and ok:
        alert("root-activity")
    if r.get("eventSource") != SM:
        continue
    req = r.get("requestParameters") or {}
    secret = req.get("secretId", "")
    if denied(r.get("errorCode")):
        alert("denied-secret-access")
    if ok and name in ("CancelRotateSecret", "DeleteSecret", "RemoveRegionsFromReplication", "StopReplicationToReplica"):
        alert("lifecycle")
    if name in ("RotationFailed", "RotationAbandoned"):
        alert("rotation-failed")
    if ok and name == "PutResourcePolicy" and public(req.get("resourcePolicy", {})):
        alert("resource-policy-public")
    if name == "BatchGetSecretValue":
        filters = req.get("filters") or []
        if filters and all(f.get("values") and all(v.startswith("!") for v in f["values"]) for f in filters):
            alert("batch-catch-all")
        day = int(time.mktime(time.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ"))) // 86400
        key = ("burst", who, day)
        counts[key] = counts.get(key, 0) + 1
        if counts[key] == 5:
            alert("batch-read-burst")
    if ok and name == "GetSecretValue":
        window = int(time.mktime(time.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ"))) // 600
        members = distinct.setdefault((who, window), set())
        before = len(members)
        members.add(secret)
        if before == 19 and len(members) == 20:
            alert("bulk-secret-read")
        if (who, secret) not in first_seen:
            first_seen.add((who, secret))
            alert("first-seen-reader")

print(json.dumps({
    "records": len(records) - duplicates, "duplicates": duplicates, "rejected": 0, "alerts": sum(by_rule.values()), "by_rule": by_rule,
    "seconds": time.perf_counter() - started,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
