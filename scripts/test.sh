#!/usr/bin/env bash
# Install the package with its test dependencies into ./.venv and run the whole test suite (lint, types, tests).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/ruff check src tests bench
.venv/bin/mypy src
.venv/bin/python -m pytest -q "$@"
