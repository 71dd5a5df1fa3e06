#!/usr/bin/env bash
# Runs the whole test suite (slow end-to-end tests included) after installing what it needs.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/pytest "$@"
