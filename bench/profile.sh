#!/usr/bin/env bash
# Profile YouRouter under load with py-spy, in the benchmark's layout (gateway on CPU 1, mock + wrk on CPU 0):
#
#   bench/profile.sh                 # c=50 non-streaming, 20 s of samples, production defaults (access log on)
#   PROFILE_LOG=0 bench/profile.sh   # access log off
#   PROFILE_TARGET=floor bench/profile.sh   # the shared floor proxy instead, to compare like for like
#
# Writes bench/results/profile-<stamp>/{profile.txt (collapsed stacks), profile.svg, summary.txt, wrk.txt, *.log}.
# Needs what bench/run.sh installs (run that once first) and py-spy (installed into $BENCH_VENV).
# Environment: SHARED_BENCH, YOUROUTER_VENV, YOUROUTER_REF, BENCH_VENV as in run.sh; PROFILE_CONC (50), PROFILE_SECONDS (20),
# PROFILE_RATE (samples/s, 200), PROFILE_PORT (15300), PROFILE_MOCK_PORT (18100), PROFILE_NATIVE=1 (C frames too),
# PROFILE_CONFIG (bench/yourouter.yaml; bench/yourouter-full.yaml = limits + budget, YR_LIMITS_BACKEND picks the backend).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="$(cd "${SHARED_BENCH:-$ROOT/../shared/bench}" && pwd)"
YOUROUTER_VENV="${YOUROUTER_VENV:-$ROOT/.venv}"
if [[ -n "${YOUROUTER_REF:-}" ]]; then  # the snapshot venv bench/run.sh builds for YOUROUTER_REF
  YOUROUTER_VENV="${TMPDIR:-/tmp}/yourouter-bench-$(git -C "$ROOT" rev-parse --short=12 "$YOUROUTER_REF^{commit}")"
  [[ -x "$YOUROUTER_VENV/bin/yourouter" ]] || { echo "run YOUROUTER_REF=$YOUROUTER_REF bench/run.sh first" >&2; exit 2; }
fi
BENCH_VENV="${BENCH_VENV:-/tmp/bench-venv}"
CONC="${PROFILE_CONC:-50}"; SECS="${PROFILE_SECONDS:-20}"; RATE="${PROFILE_RATE:-200}"
PORT="${PROFILE_PORT:-15300}"; MOCK_PORT="${PROFILE_MOCK_PORT:-18100}"
OUT="$HERE/results/profile-${PROFILE_TARGET:-yourouter}-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
[[ -x "$BENCH_VENV/bin/py-spy" ]] || "$BENCH_VENV/bin/pip" install -q py-spy

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 0 "$BENCH_VENV/bin/python" "$SHARED_BENCH/mock_upstream.py" --port "$MOCK_PORT" >"$OUT/mock.log" 2>&1 &
pids+=($!)
export BENCH_API_KEY="sk-bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export MOCK_FAST_URL="http://127.0.0.1:$MOCK_PORT/v1" MOCK_PACED_URL="http://127.0.0.1:$MOCK_PORT/v1"
export YR_BENCH_DB="$OUT/yourouter.db"
if [[ "${PROFILE_LOG:-1}" == 1 ]]; then export YR_LOG_REQUESTS=true; level=info; else export YR_LOG_REQUESTS=false; level=warning; fi
if [[ "${PROFILE_TARGET:-yourouter}" == floor ]]; then
  UPSTREAM_FAST="$MOCK_FAST_URL" UPSTREAM_KEY=sk-upstream-fixed \
    taskset -c 1 "$BENCH_VENV/bin/python" "$SHARED_BENCH/floor_proxy.py" --port "$PORT" >"$OUT/floor.log" 2>&1 &
else
  taskset -c 1 "$YOUROUTER_VENV/bin/yourouter" serve --config "${PROFILE_CONFIG:-$HERE/yourouter.yaml}" --port "$PORT" --log-level "$level" \
    >"$OUT/yourouter.log" 2>&1 &
fi
gw=$!; pids+=($gw)
url="http://127.0.0.1:$PORT/v1/chat/completions"
for _ in $(seq 100); do
  curl -sf -o /dev/null -H "Authorization: Bearer $BENCH_API_KEY" -H 'Content-Type: application/json' \
    --data-binary @"$SHARED_BENCH/payloads/chat.json" "$url" && break
  sleep 0.1
done

wrk_run() {  # seconds, output file
  WRK_BODY="$SHARED_BENCH/payloads/chat.json" WRK_HEADERS="Authorization: Bearer $BENCH_API_KEY" \
    taskset -c 0 wrk -t1 -c"$CONC" -d"$1"s --timeout 10s -s "$SHARED_BENCH/post.lua" "$url" >"$2" 2>&1
}
wrk_run 3 /dev/null                                              # warm-up
thread_cpu() {  # "tid comm utime+stime(ticks)" for every thread of the gateway
  for t in /proc/"$gw"/task/*; do
    awk -v tid="${t##*/}" -v comm="$(cat "$t/comm")" '{ sub(/.*\) /, ""); print tid, comm, $12 + $13 }' "$t/stat"
  done
}
wrk_run $((2 * SECS + 6)) "$OUT/wrk.txt" & wrkpid=$!; pids+=($wrkpid)
sleep 2
thread_cpu >"$OUT/threads.before"
native=(); [[ "${PROFILE_NATIVE:-0}" == 1 ]] && native=(--native)
taskset -c 0 "$BENCH_VENV/bin/py-spy" record --pid "$gw" --rate "$RATE" --duration "$SECS" "${native[@]}" \
  --format raw -o "$OUT/profile.txt" >"$OUT/py-spy.log" 2>&1
thread_cpu >"$OUT/threads.after"
taskset -c 0 "$BENCH_VENV/bin/py-spy" record --pid "$gw" --rate "$RATE" --duration "$SECS" "${native[@]}" \
  -o "$OUT/profile.svg" >>"$OUT/py-spy.log" 2>&1
wait "$wrkpid" || true
{
  echo "## CPU time per gateway thread while profile.txt was recorded ($SECS s; /proc utime+stime)"
  join <(sort "$OUT/threads.before") <(sort "$OUT/threads.after") |
    awk -v hz="$(getconf CLK_TCK)" -v s="$SECS" -v gw="$gw" '{ d = ($5 - $3) / hz
      printf "%7.2f s CPU (%5.1f%% of one core)  tid %s (%s)\n", d, 100 * d / s, $1, ($1 == gw ? "main thread" : "other thread") }' |
    sort -rn
  echo
  "$BENCH_VENV/bin/python" "$HERE/profile_summary.py" "$OUT/profile.txt"
} | tee "$OUT/summary.txt"
grep '^WRKJSON' "$OUT/wrk.txt" || tail -5 "$OUT/wrk.txt"
echo "profile in $OUT"
