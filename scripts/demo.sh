#!/usr/bin/env bash
# jobreport in two minutes, on this machine, with nothing configured:
#
#   bash scripts/demo.sh
#
# 1. installs what is missing (scripts/bootstrap.sh: the Debian Pushgateway, Prometheus
#    and Alertmanager packages, and .venv with jobreport),
# 2. starts a private Pushgateway, Prometheus and Alertmanager on free loopback ports
#    (scripts/stack.sh; only a Pushgateway when Prometheus is not installed),
# 3. creates a small SQLite database and backs it up with scripts/backup_db.py through
#    `jobreport run`, runs two more example jobs, one of which fails,
# 4. shows `jobreport status`, `jobreport history` and the alert Prometheus raised,
# 5. stops everything it started and removes its temporary files (also on Ctrl-C).
#
# Needs no input and leaves no service behind. The store, the locks and markers, the
# settings and the stack's record live in a temporary directory that the demo removes, so
# an existing jobreport configuration or state (~/.config/jobreport, ~/.local/state/jobreport,
# a stack started with scripts/stack.sh) is neither used nor touched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi

# --- 1. install what is missing ------------------------------------------------------------
if [[ -x .venv/bin/jobreport ]] && .venv/bin/jobreport --help >/dev/null 2>&1 \
   && command -v prometheus-pushgateway >/dev/null; then
  say "jobreport and the Pushgateway are installed (scripts/bootstrap.sh would change nothing)"
else
  say "Installing (scripts/bootstrap.sh): Debian packages and .venv"
  bash scripts/bootstrap.sh
fi
export PATH="$ROOT/.venv/bin:$PATH"
PY=$ROOT/.venv/bin/python

# --- 2. a private stack on free ports ------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jobreport-demo.XXXXXX")
# everything jobreport and stack.sh keep per user goes into WORK: the state directory
# (store, locks, run markers, peer memory), the config directory, stack.sh's record of
# running stacks (so `scripts/stack.sh stop` never picks the demo's) and temporary files
mkdir -p "$WORK/state" "$WORK/config" "$WORK/tmp"
mkdir -m 700 "$WORK/run"
export XDG_STATE_HOME=$WORK/state XDG_CONFIG_HOME=$WORK/config XDG_RUNTIME_DIR=$WORK/run
export TMPDIR=$WORK/tmp
STACK=0
PGW_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((STACK)); then
    JOBREPORT_STACK_DIR=$WORK/stack bash scripts/stack.sh stop >/dev/null 2>&1 || true
  fi
  if [[ -n $PGW_PID ]]; then
    kill "$PGW_PID" 2>/dev/null || true
    wait "$PGW_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PGW_PORT=$(free_port)
PROM_PORT=$(free_port)
AM_PORT=$(free_port)
HOOK_PORT=$(free_port)

if [[ -f scripts/stack.sh ]] && command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null; then
  say "Starting a Pushgateway, Prometheus and Alertmanager (scripts/stack.sh --background)"
  STACK=1
  PUSHGATEWAY_PORT=$PGW_PORT PROMETHEUS_PORT=$PROM_PORT ALERTMANAGER_PORT=$AM_PORT \
    WEBHOOK_PORT=$HOOK_PORT JOBREPORT_STACK_DIR=$WORK/stack bash scripts/stack.sh --background
else
  say "Starting a Pushgateway on 127.0.0.1:$PGW_PORT"
  prometheus-pushgateway --web.listen-address="127.0.0.1:$PGW_PORT" --persistence.file= \
    --log.level=warn >"$WORK/pushgateway.log" 2>&1 </dev/null &
  PGW_PID=$!
  "$PY" - "$PGW_PORT" <<'EOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/-/ready"
for _ in range(100):
    try:
        urllib.request.urlopen(url, timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("demo: the Pushgateway did not start")
EOF
fi

# nothing from the caller's configuration: a fresh store and an empty config file (not
# even /etc/jobreport/jobreport.toml)
for var in $(compgen -e | grep -E '^JOBREPORT_|^PUSHGATEWAY_URL$' || true); do unset "$var"; done
export JOBREPORT_GATEWAY=http://127.0.0.1:$PGW_PORT
export JOBREPORT_DB=sqlite:///$WORK/jobreport.db
: >"$WORK/config/jobreport.toml"
export JOBREPORT_CONFIG=$WORK/config/jobreport.toml

# --- 3. jobs -------------------------------------------------------------------------------
say "Creating a small SQLite database: $WORK/app.db"
"$PY" - "$WORK/app.db" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, total REAL)")
con.executemany("INSERT INTO customers (name) VALUES (?)", [(f"customer {i}",) for i in range(200)])
con.executemany("INSERT INTO orders (customer, total) VALUES (?, ?)",
                [(i % 200, i * 1.5) for i in range(1000)])
con.commit()
EOF
mkdir -p "$WORK/backups" "$WORK/archives"

say "Backing it up: jobreport run --job backup ... -- python scripts/backup_db.py"
(set -x; jobreport run --job backup --expect-every 24h --max-runtime 1h --timeout 2h --lock \
  -- "$PY" scripts/backup_db.py "sqlite:///$WORK/app.db" --dest "$WORK/backups" --keep 3)

say "A plain sh job that reports its own figures through \$JOBREPORT_METRICS_FILE"
(set -x; jobreport run --job archive --expect-every 6h -- sh scripts/shell_job.sh scripts/data "$WORK/archives")

say "The library form: scripts/analysis.py reports itself with job_metrics()"
(set -x; "$PY" scripts/analysis.py --out "$WORK/sample.stats.tsv" --expect-every 24h)

say "A job that fails (exit code 3); jobreport exits with the same code"
rc=0
(set -x; jobreport run --job flaky --expect-every 1h -- sh -c 'echo "disk full" >&2; exit 3') || rc=$?
echo "exit code: $rc"

# --- 4. what jobreport knows -----------------------------------------------------------------
say "jobreport status: what the Pushgateway holds now"
jobreport status

say "jobreport history: every run, from the local store"
jobreport history

say "The metrics as Prometheus scrapes them (backup group, excerpt)"
"$PY" - "$JOBREPORT_GATEWAY" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if 'job="backup"' in line and not line.startswith("#") and (
            "success" in line or "size" in line or "backup_" in line or "duration" in line):
        print(" ", line)
EOF

if ((STACK)); then
  say "Prometheus evaluates the alert rules of monitoring/rules (every 5 s here)"
  "$PY" - "http://127.0.0.1:$PROM_PORT" <<'EOF'
import json, sys, time, urllib.request
url = sys.argv[1] + "/api/v1/alerts"
deadline = time.monotonic() + 60
firing = []
while time.monotonic() < deadline:
    try:
        alerts = json.load(urllib.request.urlopen(url, timeout=5))["data"]["alerts"]
    except OSError:
        alerts = []
    firing = [a for a in alerts if a["state"] == "firing"
              and a["labels"].get("alertname") == "JobreportJobFailed"]
    if firing:
        break
    time.sleep(1)
if not firing:
    print("  (no alert yet: Prometheus needs a scrape and an evaluation; try the URL below)")
for a in firing:
    print(f"  FIRING {a['labels']['alertname']} job={a['labels'].get('job')}: "
          f"{a['annotations'].get('summary', '')}")
EOF
fi

say "Done. Everything this demo started is being stopped now."
cat <<EOF
Next, your own job (README.md, "From the demo to your first own job"). This demo's
Pushgateway is gone: start one that stays up, put jobreport on your PATH, then run:
  bash scripts/stack.sh --background        # scripts/stack.sh stop ends it
  export PATH="$ROOT/.venv/bin:\$PATH"       # or: $ROOT/.venv/bin/python -m jobreport
  export JOBREPORT_GATEWAY=http://127.0.0.1:9091
  jobreport run --job nightly --expect-every 24h -- /path/to/your/script
EOF
