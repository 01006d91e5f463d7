#!/usr/bin/env bash
# Install what jobreport's demo and tests need on a fresh Debian/Ubuntu machine:
# the Debian packages for the Pushgateway, Prometheus and Alertmanager (when missing and
# when we can: as root, or with passwordless sudo) and a virtual environment in .venv with
# jobreport installed in editable mode. Safe to run again; it only does what is missing.
#
#   scripts/bootstrap.sh          # what the demo needs: jobreport and the example jobs' extra
#   scripts/bootstrap.sh test     # plus the remote-write extra (protobuf, cramjam), the test
#                                 # tools (pytest, responses, hypothesis, mypy, ruff, ...)
#                                 # and PostgreSQL, VictoriaMetrics, node_exporter, stress-ng
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}

need=()
for pair in prometheus-pushgateway:prometheus-pushgateway prometheus:prometheus \
            prometheus-alertmanager:prometheus-alertmanager promtool:prometheus amtool:prometheus-alertmanager; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [[ $extra == test ]]; then
  # the sinks' end-to-end tests: VictoriaMetrics (with vmagent and vmalert) and node_exporter;
  # stress-ng keeps the other cores busy in scripts/stress-tests.sh
  for pair in victoria-metrics:victoria-metrics vmagent:victoria-metrics vmalert:victoria-metrics \
              prometheus-node-exporter:prometheus-node-exporter stress-ng:stress-ng; do
    cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
  done
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    need+=(postgresql)  # the store's PostgreSQL tests start a throwaway cluster
  fi
fi
if ((${#need[@]})); then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo -n"
  echo "bootstrap: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [[ $extra == test && $(id -u) -eq 0 ]] && (( (8#$(stat -c %a /) & 1) == 0 )); then
  # Some containers and chroots start with / private to root; the PostgreSQL cluster that
  # the store's tests start runs as the postgres user, which must be able to reach its files.
  echo "bootstrap: / is not searchable by other users; making it so (chmod o+x /)" >&2
  chmod o+x /
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
# pip runs only when the packaging changed since the last install (a stamp in .venv), and
# without its cache: a run of the tests writes nothing into the user's home directory
extras=examples
[[ $extra == test ]] && extras=test,examples,remote-write
stamp=".venv/.jobreport-installed-${extras//,/-}"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir)
  "${pip[@]}" --upgrade pip >/dev/null
  "${pip[@]}" -e ".[$extras]"
  echo "$want" > "$stamp"
fi
