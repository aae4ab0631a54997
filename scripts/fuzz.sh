#!/usr/bin/env bash
# Fuzzes the /v1 API against its contract, docs/openapi.yaml, with schemathesis: the local
# stack (tsunagu-local: emulator, Twilio simulator, gateway) is started on a free port, the
# run must find no server error, no response outside the schema and no error that is not
# problem+json, and everything started here is stopped afterwards, whatever the outcome.
#   scripts/fuzz.sh            the full run (make fuzz)
#   scripts/fuzz.sh --short    the short run in make test (about a minute)
# Extra arguments go to `schemathesis run`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The emulator first: scripts/with-moto.sh starts it and stops it when this script ends.
if [ -z "${TSUNAGU_FUZZ_EMULATOR:-}" ]; then
  export TSUNAGU_FUZZ_EMULATOR=1
  exec scripts/with-moto.sh "$0" "$@"
fi

examples=200
if [ "${1:-}" = "--short" ]; then
  examples=12
  shift
fi

cargo=${CARGO:-cargo}
"$cargo" build --quiet -p tsunagu-tests --bin tsunagu-local
bin="${CARGO_TARGET_DIR:-target}/debug/tsunagu-local"

mkdir -p .stack
log=$(mktemp .stack/fuzz-stack-XXXXXX.log)
# GATEWAY_PORT=0, SIMULATOR_PORT=0: each binds a free port itself (no race for a port, and
# no clash with a `make up` on the default ports).
# Two proxy numbers, in the pool and in the simulated Twilio account, so that the examples
# reach sessions and V-calls, not only errors.
GATEWAY_PORT=0 SIMULATOR_PORT=0 TABLE_NAME="fuzz-$$" PROXY_NUMBERS=050-3123-4567,050-3123-4568 "$bin" >"$log" 2>&1 &
stack_pid=$!
stop() { kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

url=
for _ in $(seq 1 300); do
  url=$(sed -n 's/^gateway *\(http[^ ]*\).*/\1/p' "$log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$stack_pid" 2>/dev/null || { echo "fuzz: the local stack did not start; its log:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "fuzz: the local stack did not report its address; see $log" >&2; exit 1; }

# SigV4 is checked by API Gateway in AWS, before any handler; the local gateway does not
# check it, so no Authorization header is generated or expected here.
# Excluded checks, each because the local stack cannot show what they test:
# - ignored_auth: the same reason.
# - unsupported_method: API Gateway HTTP APIs answer 404 {"message":"Not Found"} to a
#   method without a route, not 405 (and never reach a handler), so the local gateway does too.
# - positive_data_acceptance: a body the schema allows can still be refused by rules a schema
#   cannot state (a number must be dialable, a participant free on a proxy number, a session
#   open); those refusals are checked by the other checks to be documented problems.
set +e
.venv/bin/schemathesis --config-file scripts/schemathesis.toml run docs/openapi.yaml \
  --url "$url" \
  --checks all \
  --exclude-checks ignored_auth,unsupported_method,positive_data_acceptance \
  --max-examples "$examples" \
  --generation-deterministic \
  --generation-with-security-parameters false \
  --workers 1 --no-color \
  "$@"
status=$?
set -e
[ "$status" = 0 ] || { echo "fuzz: schemathesis found failures (stack log: $log)" >&2; exit "$status"; }
rm -f "$log"
