#!/usr/bin/env bash
# Smoke path: the real audit-writer binary under `cargo lambda watch` (the Lambda Runtime API
# emulator from cargo-lambda, installed from PyPI), invoked with the sample events in events/.
# moto stands in for S3. Everything listens on 127.0.0.1 and is stopped on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

moto_port="$(free_port)"
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$moto_port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=eu-west-1 AWS_DEFAULT_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
python3 - <<'PY'
import boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="keyward-smoke", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}, ObjectLockEnabledForBucket=True)
PY

watch_port="$(free_port)"
log "cargo lambda watch on 127.0.0.1:$watch_port"
AUDIT_BUCKET=keyward-smoke KEYWARD_S3_FORCE_PATH_STYLE=true KEYWARD_EVENT_BUS=keyward-smoke \
  cargo lambda watch -A 127.0.0.1 -P "$watch_port" --package audit-writer >"$work/watch.log" 2>&1 &
pids+=($!)

invoke() {
  cargo lambda invoke -A 127.0.0.1 -P "$watch_port" audit-writer --data-file "$1" 2>&1
}

# The first invoke builds and starts the function; allow it time.
out=""
for _ in $(seq 1 60); do
  if out="$(invoke events/audit-writer/secret-rotated.json)"; then break; fi
  sleep 2
done
echo "$out"
grep -q '"outcome":"written"' <<<"$out" || { cat "$work/watch.log"; echo "smoke: first delivery was not written" >&2; exit 1; }

out="$(invoke events/audit-writer/secret-rotated.json)"
echo "$out"
grep -q '"outcome":"duplicate"' <<<"$out" || { echo "smoke: redelivery was not a duplicate" >&2; exit 1; }

if out="$(invoke events/audit-writer/not-a-domain-event.json)"; then
  echo "smoke: an invalid event was accepted: $out" >&2; exit 1
fi
echo "$out"
grep -q 'InvalidEvent' <<<"$out" || { echo "smoke: invalid event did not fail with InvalidEvent" >&2; exit 1; }
if grep -q 'should-never-be-stored' "$work/watch.log"; then
  echo "smoke: a payload value reached the function log" >&2; exit 1
fi
log "smoke passed"
