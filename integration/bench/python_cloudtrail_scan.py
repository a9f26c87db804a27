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


RUNTIME = {"apn", "hashicorp", "md", "os", "lang", "exec-env", "ua", "api", "cfg", "m", "app"}


def major(version):
    digits = ""
    for c in version.lstrip("vV"):
        if not c.isdigit():
            break
        digits += c
    return digits or "0"


def family(agent):
    tokens = (agent or "").strip().strip("[]").split()
    for t in tokens:
        name, _, version = t.partition("/")
        if version and name.lower() == "terraform":
            return "terraform/" + major(version)
    for t in tokens:
        name, _, version = t.partition("/")
        if version and name.lower() in RUNTIME:
            continue
        if not version:
            return t.split("_")[0].lower()
        return "browser" if name.lower() == "mozilla" else name.lower() + "/" + major(version)
    return ""


def network(ip, endpoint):
    if endpoint:
        return endpoint
    try:
        net = ipaddress.ip_network(ip + ("/24" if ":" not in ip else "/48"), strict=False)
        return str(net)
    except ValueError:
        return (ip or "").lower()


with gzip.open(sys.argv[1], "rt") as f:
    records = json.load(f)["Records"]

seen_ids, counts, distinct, first_seen = set(), {}, {}, set()
first_way, crossed_novel = {}, set()
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
    if ok and name in ("GetSecretValue", "BatchGetSecretValue"):
        at = int(time.mktime(time.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ")))
        novel = False
        for kind, way in (("client", family(r.get("userAgent"))), ("network", network(r.get("sourceIPAddress", ""), r.get("vpcEndpointId")))):
            key = (kind, who, way)
            if key not in first_way:
                first_way[key] = at
                alert("first-seen-" + kind)
            novel = novel or first_way[key] + 3600 >= at
        filtered = bool(req.get("filters"))
        if filtered and novel:
            alert("filtered-batch-novel-client")
        secrets = [] if filtered else ([secret] if secret else []) + list(req.get("secretIdList") or [])
        window = at // 600
        for one in secrets:
            members = distinct.setdefault((who, window), set())
            before = len(members)
            members.add(one)
            if before == 19 and len(members) == 20:
                alert("bulk-secret-read")
                if novel and (who, window) not in crossed_novel:
                    crossed_novel.add((who, window))
                    alert("bulk-read-novel-client")
            if (who, one) not in first_seen:
                first_seen.add((who, one))
                alert("first-seen-reader")

print(json.dumps({
    "records": len(records) - duplicates, "duplicates": duplicates, "rejected": 0, "alerts": sum(by_rule.values()), "by_rule": by_rule,
    "seconds": time.perf_counter() - started,
    "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
