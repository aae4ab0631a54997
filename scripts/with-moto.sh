#!/usr/bin/env bash
# Runs a command with the moto emulator (DynamoDB and its streams, Secrets Manager, SQS,
# EventBridge Scheduler) on 127.0.0.1, then stops the emulator, whatever the command's
# outcome. The command sees AWS_ENDPOINT_URL.
#   scripts/with-moto.sh cargo test --workspace --tests
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

port=${MOTO_PORT:-0}
if [ "$port" = 0 ]; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi
mkdir -p .stack
log=.stack/moto-$port.log
# Not plain `moto_server`: its transactions are not atomic under concurrent requests, so
# scripts/moto-serial.py serves one request at a time, as serializable as DynamoDB's.
.venv/bin/python scripts/moto-serial.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
stop() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 100); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$moto_pid" 2>/dev/null || { echo "moto did not start; see $log" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=ap-northeast-1
"$@"
