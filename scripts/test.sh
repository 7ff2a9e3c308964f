#!/usr/bin/env bash
# Set up, then run the whole test suite: lint, type check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check imgsim_index tests scripts benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
