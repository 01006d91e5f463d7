#!/usr/bin/env bash
# Run the README's test command (scripts/test.sh: ruff, mypy --strict, the whole suite on
# two pytest workers) several times in a row while the machine's other cores are kept busy,
# to prove that no test depends on how fast the machine is (issue 15).
#
#   bash scripts/stress-tests.sh                  # 3 runs, nproc-1 busy cores (at least 1)
#   bash scripts/stress-tests.sh -n 5 -w 2        # 5 runs, 2 busy cores
#   bash scripts/stress-tests.sh -n 1 -- -x tests/test_process.py   # quick: stop at the first failure
#
# Options: -n RUNS (default 3, or $STRESS_RUNS), -w WORKERS busy processes (default
# nproc-1, at least 1, or $STRESS_WORKERS; 0 for none), -l DIR for the logs of each run
# (default: a new directory under /tmp), -s to skip scripts/bootstrap.sh (which installs
# what the suite needs; it runs once, before the first run, not in each). Arguments after
# `--` go to pytest, as with scripts/test.sh.
#
# The load comes from `stress-ng --cpu WORKERS` when it is installed (Debian: stress-ng),
# else from WORKERS `python3 -c 'while True: pass'` processes. Either way the script starts
# them itself and stops them by PID when it ends, also on Ctrl-C or an error.
# Prints one line per run (result, pytest's summary, seconds), then a summary of all runs,
# and exits non-zero if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${STRESS_RUNS:-3}
cores=$(nproc 2>/dev/null || echo 2)
workers=${STRESS_WORKERS:-$(( cores > 1 ? cores - 1 : 1 ))}
logs=""
bootstrap=1
while getopts "n:w:l:sh" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    w) workers=$OPTARG ;;
    l) logs=$OPTARG ;;
    s) bootstrap=0 ;;
    h) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [-n RUNS] [-w WORKERS] [-l LOGDIR] [-s] [-- PYTEST_ARGS...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == -- ]] && shift
if ! [[ $runs =~ ^[1-9][0-9]*$ && $workers =~ ^[0-9]+$ ]]; then
  echo "stress-tests.sh: RUNS must be a positive number and WORKERS a number" >&2
  exit 2
fi

if (( bootstrap )) || [[ ! -x .venv/bin/pytest ]]; then
  bash scripts/bootstrap.sh test
fi
export PATH="$PWD/.venv/bin:$PATH"
logs=${logs:-$(mktemp -d /tmp/jobreport-stress.XXXXXX)}
mkdir -p "$logs"

stressors=()
stop_load() {
  local pid
  for pid in "${stressors[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${stressors[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  stressors=()
}
trap stop_load EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load="none"
# a cap in case this script is killed with SIGKILL and cannot stop its load
max_seconds=$(( 3600 * runs ))
if (( workers > 0 )); then
  if command -v stress-ng >/dev/null 2>&1; then
    # stress-ng stops its own workers when it gets SIGTERM
    stress-ng --cpu "$workers" --timeout "$max_seconds" --quiet >/dev/null 2>&1 &
    stressors+=($!)
    load="stress-ng --cpu $workers"
  else
    for _ in $(seq "$workers"); do
      python3 -c "import time
end = time.monotonic() + $max_seconds
while time.monotonic() < end: pass" &
      stressors+=($!)
    done
    load="$workers busy python3 processes"
  fi
fi

echo "stress-tests.sh: $runs run(s) of the suite on $cores core(s), load: $load; logs in $logs" >&2
failed=0
summary=()
for i in $(seq "$runs"); do
  log="$logs/run-$i.log"
  start=$(date +%s)
  rc=0
  JOBREPORT_TEST_BOOTSTRAP=0 bash scripts/test.sh "$@" >"$log" 2>&1 || rc=$?
  seconds=$(( $(date +%s) - start ))
  result=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)|no tests ran' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//;s/ *$//')
  [[ -n $result ]] || result=$(grep -E '^(== (ruff|mypy)|Found [0-9]+ error)' "$log" | tail -n 1)
  for pid in "${stressors[@]}"; do
    kill -0 "$pid" 2>/dev/null || result="$result (the load had stopped)"
  done
  if (( rc == 0 )); then verdict=passed; else verdict="FAILED (exit $rc)"; failed=$((failed + 1)); fi
  line="run $i/$runs: $verdict: ${result:-no summary, see $log} [${seconds}s]"
  summary+=("$line")
  echo "$line" >&2
  if (( rc != 0 )); then
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' >&2 || true
  fi
done
stop_load
{
  echo "stress-tests.sh: $(( runs - failed ))/$runs run(s) passed under load ($load):" \
    "$( ((failed == 0)) && echo PASS || echo FAIL)"
  printf '  %s\n' "${summary[@]}"
} | tee "$logs/summary.txt" >&2
(( failed == 0 ))
