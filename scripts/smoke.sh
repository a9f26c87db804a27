#!/usr/bin/env bash
# Smoke path: the real audit-writer binary served by cargo-lambda's Lambda Runtime API emulator
# (`cargo lambda watch --only-lambda-apis`, cargo-lambda installed from PyPI) and invoked with
# `cargo lambda invoke` and the sample events in events/. moto stands in for S3. Everything
# listens on 127.0.0.1 and is stopped on exit.
#
# The binary is the one the test run already built: `cargo lambda watch` without
# --only-lambda-apis would rebuild the whole dependency tree under `cargo run` (minutes and
# gigabytes on a fresh machine), and `cargo lambda invoke` waits without limit for a function
# that never starts. Every wait here is bounded.
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

# The host build by default; the release check passes the arm64 bootstrap sam build made (a
# launcher that runs it under qemu) as KEYWARD_SMOKE_BINARY.
binary="${KEYWARD_SMOKE_BINARY:-$CARGO_TARGET_DIR/debug/audit-writer}"
if [[ -z "${KEYWARD_SMOKE_BINARY:-}" && ! -x "$binary" ]]; then
  log "building audit-writer"
  cargo build --locked -p audit-writer --bin audit-writer
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

moto_port="$(free_port)"
# moto as the harness starts it (integration/moto/serve.py: one divergence from AWS corrected).
python "$KEYWARD_ROOT/integration/moto/serve.py" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
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

wait_for_port() {
  for _ in $(seq 1 150); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

watch_port="$(free_port)"
log "cargo lambda watch --only-lambda-apis on 127.0.0.1:$watch_port"
cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$watch_port" >"$work/watch.log" 2>&1 &
pids+=($!)
wait_for_port "$watch_port" || { cat "$work/watch.log"; echo "smoke: the runtime API emulator did not start" >&2; exit 1; }

# The emulator serves one function named `_` (what it prints for --only-lambda-apis).
AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$watch_port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ \
  AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 \
  AUDIT_BUCKET=keyward-smoke KEYWARD_S3_FORCE_PATH_STYLE=true KEYWARD_EVENT_BUS=keyward-smoke \
  "$binary" >"$work/function.log" 2>&1 &
function_pid=$!
pids+=("$function_pid")

invoke() {
  kill -0 "$function_pid" 2>/dev/null || { cat "$work/function.log" >&2; echo "smoke: the function exited" >&2; return 2; }
  timeout 60 cargo lambda invoke -A 127.0.0.1 -P "$watch_port" _ --data-file "$1" 2>&1
}

out=""
for _ in $(seq 1 10); do
  if out="$(invoke events/audit-writer/secret-rotated.json)"; then break; fi
  sleep 1
done
echo "$out"
grep -q '"outcome":"written"' <<<"$out" || { cat "$work/function.log"; echo "smoke: first delivery was not written" >&2; exit 1; }

out="$(invoke events/audit-writer/secret-rotated.json)"
echo "$out"
grep -q '"outcome":"duplicate"' <<<"$out" || { echo "smoke: redelivery was not a duplicate" >&2; exit 1; }

if out="$(invoke events/audit-writer/not-a-domain-event.json)"; then
  echo "smoke: an invalid event was accepted: $out" >&2; exit 1
fi
echo "$out"
grep -q 'InvalidEvent' <<<"$out" || { echo "smoke: invalid event did not fail with InvalidEvent" >&2; exit 1; }
if grep -q 'should-never-be-stored' "$work/function.log" "$work/watch.log"; then
  echo "smoke: a payload value reached the function log" >&2; exit 1
fi
log "smoke passed"
