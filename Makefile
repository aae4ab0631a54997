# Tsunagu — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (the emulator into .venv) and stop what they start.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo test fuzz up call seed invoke lint fmt clippy bench bench-lambda bench-sweep clean

## make demo: the whole local stack and a full masked-call scenario, as a timeline
demo:
	@scripts/with-moto.sh $(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-demo

## make test: unit, emulator and end-to-end tests (ends with the test runner's summary)
test:
	@scripts/bootstrap.sh
	@.venv/bin/cfn-lint template.yaml
	@python3 scripts/sign-events.py --check
	@python3 scripts/check-links.py
	@CARGO=$(CARGO) scripts/fuzz.sh --short
	@$(CARGO) build --quiet --workspace --bins
	@scripts/with-moto.sh $(CARGO) test --workspace --tests

## make fuzz: schemathesis against the local stack with docs/openapi.yaml (a few minutes)
fuzz:
	@CARGO=$(CARGO) scripts/fuzz.sh

## make up: emulator + simulator + gateway on 127.0.0.1:$${GATEWAY_PORT:-3000}, until Ctrl-C
up:
	@MOTO_PORT=$${MOTO_PORT:-5000} scripts/with-moto.sh $(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-local

## make call FROM=090-… TO=050-… [TALK=30] [RING=3] [ANSWER=answer|busy|no-answer|fail] [VERBOSE=1]:
## a phone calls a proxy number on the stack `make up` runs (same GATEWAY_PORT)
TSUNAGU_CALL ?= $(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-call --
call:
	@$(TSUNAGU_CALL) --from '$(FROM)' --to '$(TO)' --talk '$(or $(TALK),30)' \
	  --answer-after '$(or $(RING),3)' --callee '$(or $(ANSWER),answer)' $(if $(VERBOSE),--verbose)

## make seed: restore, on the stack `make up` runs, the state events/*.json refer to
seed:
	@$(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-seed

## make invoke EVENT=events/<name>.json: one event through its function's binary, local.env's environment
invoke:
	@$(CARGO) build --quiet --workspace --bins
	@$(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-invoke -- $(EVENT)

## make lint: formatting, clippy, cfn-lint, and links that stay inside the repository
lint: fmt clippy
	@scripts/bootstrap.sh && .venv/bin/cfn-lint template.yaml
	@python3 scripts/check-links.py

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## make bench: criterion benchmarks of the per-webhook CPU work (see docs/PERFORMANCE.md)
bench:
	$(CARGO) bench -p tsunagu

## make bench-lambda: every function's release binary and a lambda_http floor, behind the
## Runtime API stand-in on a seeded local stack: init, first invoke, warm p50/p99, peak RSS
BENCH_WARM ?= 200
comma := ,
bench-lambda:
	@$(CARGO) build --quiet --release $(foreach f,$(if $(BENCH_ONLY),$(subst $(comma), ,$(BENCH_ONLY)),$(notdir $(wildcard functions/*))),-p $(f)) -p lambda-floor
	@BENCH_ONLY=$(BENCH_ONLY) scripts/with-moto.sh $(CARGO) run --quiet -p tsunagu-tests --bin tsunagu-bench-lambda -- \
	  $${CARGO_TARGET_DIR:-target}/release $(BENCH_WARM)

## make bench-sweep: one expiry-warning invocation over 10,000 due sessions, DynamoDB 5 ms
## away (a delaying proxy in front of the emulator): wall time, requests per operation
BENCH_SWEEP_SESSIONS ?= 10000
BENCH_SWEEP_DELAY_MS ?= 5
bench-sweep:
	@scripts/with-moto.sh $(CARGO) run --quiet --release -p tsunagu-tests --bin tsunagu-bench-sweep -- \
	  $(BENCH_SWEEP_SESSIONS) $(BENCH_SWEEP_DELAY_MS)

clean:
	rm -rf .stack
