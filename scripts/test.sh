#!/usr/bin/env bash
# Install everything the test suite needs, then run ruff, mypy (strict) and the whole suite
# (as CI does). Exits non-zero on any failure, including "no tests ran".
#
# For quick work, the unit tests alone (no server, no long child process; under a minute):
#   .venv/bin/pytest -m unit          (or: JOBREPORT_TEST_BOOTSTRAP=0 bash scripts/test.sh -m unit)
# Every test runs with its own HOME, XDG directories and TMPDIR: the suite touches neither
# ~/.local/state/jobreport, ~/.config/jobreport nor a stack started with scripts/stack.sh
# (docs/development.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# JOBREPORT_TEST_BOOTSTRAP=0 skips the install (scripts/stress-tests.sh runs it once first)
if [[ ${JOBREPORT_TEST_BOOTSTRAP:-1} != 0 ]]; then
  bash scripts/bootstrap.sh test
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" >&2
ruff check jobreport
echo "== mypy --strict" >&2
mypy --strict jobreport
# Two workers (pytest-xdist): the suite spends much of its time waiting on servers and
# child processes, so two workers pay off even when the machine's other core is busy.
# JOBREPORT_TEST_WORKERS=0 runs it in one process; arguments go to pytest (`-x`, a file).
workers=${JOBREPORT_TEST_WORKERS:-2}
echo "== pytest ($workers workers)" >&2
rc=0
pytest -q -p no:cacheprovider -n "$workers" --dist worksteal "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests: failing" >&2
fi
exit "$rc"
