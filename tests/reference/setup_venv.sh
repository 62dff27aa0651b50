#!/usr/bin/env bash
# Creates the reference virtual environment (torch is large: do this once, never in CI).
#   tests/reference/setup_venv.sh            # -> tests/reference/.venv
#   NVL_REF_VENV=/path/venv tests/reference/setup_venv.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${NVL_REF_VENV:-$here/.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt"
echo "reference venv ready: $venv (use $venv/bin/python tests/reference/<generator>.py)"
