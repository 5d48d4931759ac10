#!/usr/bin/env bash
# Issue #8's whole benchmark in one command, from the repository root (~50 min on the 2-core machine):
#
#   bench/all.sh                 # measures HEAD (git archive -> its own venv), so edits during the run change nothing
#   YOUROUTER_REF=<rev> bench/all.sh
#   SKIP_INSTALL=1 bench/all.sh  # peers already installed
#
# In order, each writing its own report (figures into README.md, section "Performance"):
#   1. bench/run.sh: direct, floor, YouRouter (full pipeline: limits + budget in process; the same on Redis; and
#      without limits), LiteLLM and Portkey side by side: non-streaming c=1/10/50, streaming at 10 streams,
#      startup, RSS                                                             -> bench/results/<stamp>/
#   2. the same harness again with 100 concurrent streams                      -> bench/results/<stamp>/
#   2b. bench/rounds.py: the headline ratios (c=50 throughput and CPU, Redis/in-process CPU, 100-stream TTFT and CPU)
#       over 8 rounds (ROUNDS=n) of floor, YouRouter and YouRouter on Redis in rotating order (one pass is noise)
#                                                                               -> ROUNDS.md
#   2c. bench/stream_total.py: the 100-stream total stream time against direct's (and TTFT against the floor's), in
#       short interleaved windows of direct, floor, the floor again and YouRouter, 16 cycles  -> STREAM_TOTAL.md
#   3. bench/translation.py: translated (Anthropic client -> OpenAI upstream) against passthrough -> TRANSLATION.md
#   4. bench/limits.py: limits + budget overhead, in process and on Redis        -> LIMITS.md
#   5. bench/memory.py: 10-minute soak at 300 req/s (mixed) and 1,000 open streams -> MEMORY.md
#   6. bench/large.py: 1 KiB ... 4 MiB bodies, 100 ... 10,000-chunk streams    -> LARGE.md
#   7. bench/workers.py: --workers 2 against 1, shared Redis limits, startup   -> WORKERS.md
#   8. bench/scaling.py: Redis round trips and ledger transactions per request -> SCALING.md
#   9. bench/chart.py: docs/benchmark.png from runs 1 and 2
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
export YOUROUTER_REF="${YOUROUTER_REF:-HEAD}"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
stamp() { ls -1dt "$HERE"/results/2*/ | head -1; }

bench/run.sh                                                           # 1 (installs peers unless SKIP_INSTALL=1)
main_run="$(stamp)"
SKIP_INSTALL=1 bench/run.sh --only direct floor yourouter yourouter-redis litellm portkey \
  --concurrency 1 --duration 10 --repeat 1 --stream-concurrency 100        # 2
stream_run="$(stamp)"
"$PY" bench/rounds.py --ref "$YOUROUTER_REF" --rounds "${ROUNDS:-8}"     # 2b
"$PY" bench/stream_total.py --ref "$YOUROUTER_REF" --cycles 16          # 2c
"$PY" bench/translation.py --ref "$YOUROUTER_REF"                       # 3
"$PY" bench/limits.py --ref "$YOUROUTER_REF" --rounds 4                 # 4
"$PY" bench/memory.py --ref "$YOUROUTER_REF"                            # 5
"$PY" bench/large.py --ref "$YOUROUTER_REF"                             # 6
"$PY" bench/workers.py --ref "$YOUROUTER_REF"                           # 7
"$PY" bench/scaling.py                                                  # 8 (the working tree's venv)
"${BENCH_VENV:-/tmp/bench-venv}/bin/python" -c "import matplotlib" 2>/dev/null \
  || "${BENCH_VENV:-/tmp/bench-venv}/bin/pip" install -q matplotlib
"${BENCH_VENV:-/tmp/bench-venv}/bin/python" bench/chart.py "$main_run" "$stream_run" --out docs/benchmark.png   # 9
