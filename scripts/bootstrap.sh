#!/usr/bin/env bash
# Installs the project's local tools (the moto emulator, cfn-lint) into ./.venv.
# Idempotent: does nothing when .venv already matches scripts/requirements-dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

req=scripts/requirements-dev.txt
stamp=.venv/.requirements
if [ -x .venv/bin/moto_server ] && [ -x .venv/bin/cfn-lint ] && cmp -s "$req" "$stamp" 2>/dev/null; then
  exit 0
fi
python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "bootstrap: $python not found (Python 3.9+ is needed for the emulator)" >&2; exit 1; }
echo "bootstrap: installing the emulator and cfn-lint into .venv (about 10 s)"
"$python" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
