#!/usr/bin/env bash
# Run every benchmark in turn; print the figures and keep them as JSON lines in
# benchmarks/results.jsonl (overwritten). Each script measures its own baseline in the same
# run. Takes about 20-30 minutes on 2 cores; run it on a quiet machine.
#
#   bash benchmarks/run_all.sh            # default repeat counts
#   REPEAT=10 bash benchmarks/run_all.sh  # fewer repeats (quicker, noisier)
set -euo pipefail
cd "$(dirname "$0")"
py=../.venv/bin/python
out=results.jsonl
: > "$out"
rep=()
[[ -n ${REPEAT:-} ]] && rep=(--repeat "$REPEAT")
for script in bench_run.py bench_job_metrics.py bench_flush.py bench_history.py bench_hang.py \
              bench_unreachable.py bench_readback.py bench_fleet.py bench_async.py \
              importtime.py; do
  echo
  "$py" "$script" "${rep[@]}" --json "$out"
done
echo
echo "results: benchmarks/$out"
