#!/usr/bin/env bash
# Install everything the test suite needs, then run ruff, mypy (strict) and the whole suite.
# Exits non-zero on any failure, including "no tests ran".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" >&2
ruff check jobreport
echo "== mypy --strict" >&2
mypy --strict jobreport
echo "== pytest" >&2
rc=0
pytest -q -p no:cacheprovider "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests: failing" >&2
fi
exit "$rc"
