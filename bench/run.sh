#!/usr/bin/env bash
# YouRouter in the shared side-by-side gateway benchmark, in one command from the repository root:
#
#   bench/run.sh                          # install what is missing, then every target (~8 min, 15 s per test)
#   bench/run.sh --duration 5 --only direct floor yourouter
#   SKIP_INSTALL=1 bench/run.sh --repeat 3
#
# Runs ../shared/bench/bench.py (the read-only harness beside the repository) with bench/targets.toml
# (its direct/floor/litellm/portkey targets plus yourouter and yourouter-nolog) and writes
# bench/results/<stamp>/{results.md,results.json,logs/}. Extra arguments go to bench.py (--help lists them).
#
# Environment (all optional):
#   SHARED_BENCH     the harness directory       (default: <repo>/../shared/bench)
#   YOUROUTER_VENV   venv with yourouter         (default: <repo>/.venv; created + `pip install -e .` if missing)
#   YOUROUTER_REF    measure this commit instead of the working tree (e.g. HEAD): `git archive` of it is
#                    installed (not editable) into ${TMPDIR:-/tmp}/yourouter-bench-<sha>, so edits made to src/
#                    while the benchmark runs cannot change or break what is measured
#   LITELLM_VENV, PORTKEY_DIR, BENCH_VENV        peers and the mock's venv, as in setup_peers.sh
#                                                (defaults /tmp/litellm-venv, /tmp/portkey, /tmp/bench-venv)
#   YOUROUTER_REDIS_URL  the Redis of [yourouter-redis] (default redis://127.0.0.1:6379/0)
#   SKIP_INSTALL=1   install nothing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
[[ -f "$SHARED_BENCH/bench.py" ]] || { echo "run.sh: harness not found at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 2; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"

export YOUROUTER_ROOT="$ROOT"
export YOUROUTER_VENV="${YOUROUTER_VENV:-$ROOT/.venv}"
if [[ -n "${YOUROUTER_REF:-}" ]]; then
  sha="$(git -C "$ROOT" rev-parse --short=12 "$YOUROUTER_REF^{commit}")"
  export YOUROUTER_REV="$sha" YOUROUTER_VENV="${TMPDIR:-/tmp}/yourouter-bench-$sha"
  if ! "$YOUROUTER_VENV/bin/python" -c "import yourouter" 2>/dev/null; then
    src="$(mktemp -d)"
    git -C "$ROOT" archive "$sha" | tar -x -C "$src"
    python3 -m venv "$YOUROUTER_VENV"
    "$YOUROUTER_VENV/bin/pip" install -q "$src"
    rm -rf "$src"
  fi
fi
export YOUROUTER_BENCH_STATE="${YOUROUTER_BENCH_STATE:-$HERE/results/state}"
export YOUROUTER_REDIS_URL="${YOUROUTER_REDIS_URL:-redis://127.0.0.1:6379/0}"
export LITELLM_VENV="${LITELLM_VENV:-/tmp/litellm-venv}"
export PORTKEY_DIR="${PORTKEY_DIR:-/tmp/portkey}"
export BENCH_VENV="${BENCH_VENV:-/tmp/bench-venv}"

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  "$SHARED_BENCH/setup_peers.sh"              # wrk, hey, mock venv, LiteLLM, Portkey (idempotent)
  if ! "$YOUROUTER_VENV/bin/python" -c "import yourouter" 2>/dev/null; then
    [[ -x "$YOUROUTER_VENV/bin/python" ]] || python3 -m venv "$YOUROUTER_VENV"
    "$YOUROUTER_VENV/bin/pip" install -q -e "$ROOT"
  fi
fi
mkdir -p "$HERE/results"
cd "$ROOT"
exec "$BENCH_VENV/bin/python" "$SHARED_BENCH/bench.py" --targets "$HERE/targets.toml" --out "$HERE/results" "$@"
