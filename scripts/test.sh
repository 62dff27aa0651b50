#!/usr/bin/env bash
# Runs the whole test suite on the build from scripts/setup.sh. GPU tests are skipped (exit 77)
# without a CUDA device; tests that read ../shared skip with a reason when it is absent.
#   scripts/test.sh [extra ctest args, e.g. -L unit]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j "$JOBS" "$@"
