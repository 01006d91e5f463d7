#!/usr/bin/env bash
# Start a local Pushgateway, Prometheus and Alertmanager on loopback with the files in
# monitoring/ (the jobreport alert and recording rules, the Alertmanager routing), from the
# installed Debian programs (scripts/bootstrap.sh installs them). For trying jobreport out
# and for the demo; not a production setup.
#
#   scripts/stack.sh                 start in the foreground; Ctrl-C stops everything
#   scripts/stack.sh --background    start detached, write a pid file, print the URLs
#   scripts/stack.sh stop            stop a detached stack and remove its data
#   scripts/stack.sh status          say whether it runs, and where
#
# Which stack stop and status act on:
#   - with JOBREPORT_STACK_DIR set: the stack in that directory, and nothing else (none
#     there: status says "not running" with exit 3, stop stops nothing);
#   - without it: the stack in the default directory when one runs there (the one
#     `scripts/stack.sh --background` started); else the one stack that runs wherever it
#     was started (start records each directory in
#     ${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/jobreport-stacks-$UID/); with several running and
#     none in the default directory, they are named and nothing is stopped.
# A stack's processes are recognised by their command lines naming its directory's files,
# so a stale pid file never stops another program.
#
# Nothing leaves the machine: the Alertmanager gets the shipped routing with every receiver
# turned into a webhook to a small receiver this script starts on loopback (it appends each
# notification to $JOBREPORT_STACK_DIR/alerts.jsonl); the e-mail and Slack placeholders of
# monitoring/alertmanager.yml are dropped.
#
# Environment:
#   PUSHGATEWAY_PORT (9091) PROMETHEUS_PORT (9090) ALERTMANAGER_PORT (9093)
#   WEBHOOK_PORT (5001)       the local alert receiver
#   JOBREPORT_STACK_DIR       data, logs, runtime configs, pid file
#                             (default ${TMPDIR:-/tmp}/jobreport-stack-$UID)
#   JOBREPORT_STACK_INTERVAL  scrape and rule evaluation interval (default 5s; the
#                             shipped prometheus.yml says 15s)
#   JOBREPORT_STACK_WEBHOOK   send the notifications to this loopback URL instead (then no
#                             receiver is started), e.g. http://127.0.0.1:8080/hook
#
# $JOBREPORT_STACK_DIR/env holds "export JOBREPORT_GATEWAY=..." for scripts to source.
#
# Prometheus needs the real addresses, so it gets a runtime copy of prometheus.yml with the
# ports and the interval filled in; the rules are the shipped files.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MON=$ROOT/monitoring
PGW_PORT=${PUSHGATEWAY_PORT:-9091}
PROM_PORT=${PROMETHEUS_PORT:-9090}
AM_PORT=${ALERTMANAGER_PORT:-9093}
HOOK_PORT=${WEBHOOK_PORT:-5001}
INTERVAL=${JOBREPORT_STACK_INTERVAL:-5s}
# absolute and normalised (no "//", "..", trailing "/", symbolic links), so that the record
# below, the pid checks and the default-directory test each name one directory one way
DEFAULT_DIR=$(realpath -m -- "${TMPDIR:-/tmp}/jobreport-stack-$(id -u)")
DIR=$(realpath -m -- "${JOBREPORT_STACK_DIR:-$DEFAULT_DIR}")
PIDFILE=$DIR/stack.pid
# where start records each stack's directory, so that stop finds it from anywhere
REGISTRY=${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/jobreport-stacks-$(id -u)

PUSHGATEWAY=$(command -v prometheus-pushgateway || echo /usr/bin/prometheus-pushgateway)
PROMETHEUS=$(command -v prometheus || echo /usr/bin/prometheus)
ALERTMANAGER=$(command -v prometheus-alertmanager || echo /usr/bin/prometheus-alertmanager)

die() { echo "stack.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# http_ok PORT PATH: true when GET answers 200 (bash's /dev/tcp: no curl needed)
http_ok() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
    read -r _ code _ <&3
    [[ $code == 200 ]]' _ "$1" "$2" 2>/dev/null
}

port_busy() { timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# pids of the running stack in DIR (default $DIR): only those still alive and still our
# programs (their command line names a file of this directory that start gave them)
live_pids() {
  local dir=${1:-$DIR} pid
  [[ -f $dir/stack.pid ]] || return 0
  while read -r pid _; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' '\n' </proc/"$pid"/cmdline \
        | grep -qxF -e "$dir/webhook.py" -e "--persistence.file=$dir/pushgateway.db" \
                    -e "--config.file=$dir/alertmanager.yml" -e "--config.file=$dir/prometheus.yml"; then
      echo "$pid"
    fi
  done <"$dir/stack.pid"
}

registry_entry() { echo "$REGISTRY/$(printf '%s' "$1" | md5sum | cut -c1-16)"; }

# the directories of the stacks that run now (stale records are removed on the way)
running_dirs() {
  local entry dir
  [[ -d $REGISTRY ]] || return 0
  for entry in "$REGISTRY"/*; do
    [[ -f $entry ]] || continue
    dir=$(<"$entry")
    if [[ -n $(live_pids "$dir") ]]; then echo "$dir"; else rm -f "$entry"; fi
  done
}

# stop and status without JOBREPORT_STACK_DIR: the default directory if a stack runs there,
# else the one stack that runs; with several, name them and give up
find_stack() {
  [[ -n ${JOBREPORT_STACK_DIR:-} || -n $(live_pids) ]] && return 0
  local dirs=()
  mapfile -t dirs < <(running_dirs)
  if ((${#dirs[@]} == 1)); then
    DIR=${dirs[0]}
    PIDFILE=$DIR/stack.pid
  elif ((${#dirs[@]} > 1)); then
    echo "stack.sh: ${#dirs[@]} stacks are running; name one:" >&2
    local d
    for d in "${dirs[@]}"; do echo "  JOBREPORT_STACK_DIR=$d $0 ${1:-stop}" >&2; done
    exit 1
  fi
}

stop_stack() {
  local pids=() pid i
  mapfile -t pids < <(live_pids)
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # remove only what this script created
  rm -rf "$DIR/pushgateway.db" "$DIR/prometheus" "$DIR/alertmanager" "$DIR/rules" \
         "$DIR/prometheus.yml" "$DIR/alertmanager.yml" "$DIR/webhook.py" "$DIR/alerts.jsonl" \
         "$DIR/env" "$DIR/urls" "$DIR"/*.log "$PIDFILE"
  rm -f "$(registry_entry "$DIR")"
  rmdir "$DIR" "$REGISTRY" 2>/dev/null || true
}

print_urls() {
  cat <<EOF
Pushgateway:  http://127.0.0.1:$PGW_PORT
Prometheus:   http://127.0.0.1:$PROM_PORT   (alerts: http://127.0.0.1:$PROM_PORT/alerts)
Alertmanager: http://127.0.0.1:$AM_PORT   (notifications: $WEBHOOK$( ((START_HOOK)) && echo ", kept in $DIR/alerts.jsonl"))
Data and logs: $DIR
export JOBREPORT_GATEWAY=http://127.0.0.1:$PGW_PORT
EOF
}

write_configs() {
  mkdir -p "$DIR/prometheus" "$DIR/alertmanager"
  ln -sfn "$MON/rules" "$DIR/rules"
  sed -e "s/127\.0\.0\.1:9091/127.0.0.1:$PGW_PORT/g" \
      -e "s/127\.0\.0\.1:9093/127.0.0.1:$AM_PORT/g" \
      -e "s/^\(  *scrape_interval:\).*/\1 $INTERVAL/" \
      -e "s/^\(  *evaluation_interval:\).*/\1 $INTERVAL/" \
      "$MON/prometheus.yml" >"$DIR/prometheus.yml"
  grep -q "127.0.0.1:$PGW_PORT" "$DIR/prometheus.yml" && grep -q "127.0.0.1:$AM_PORT" "$DIR/prometheus.yml" \
    || die "could not fill the ports into $DIR/prometheus.yml (has monitoring/prometheus.yml changed?)"
  # the shipped routing, without the e-mail and Slack receivers' blocks (they would try
  # smtp.example.org and hooks.slack.com), every webhook pointed at $WEBHOOK
  awk '
    { match($0, /^ */); ind = RLENGTH }
    skip && ($0 ~ /^[[:space:]]*$/ || ind > skip_ind || (ind == skip_ind && $0 ~ /^ *- /)) { next }
    { skip = 0 }
    $0 ~ /^ *(email_configs|slack_configs|pagerduty_configs|opsgenie_configs|pushover_configs|victorops_configs|telegram_configs|msteams_configs|sns_configs|wechat_configs|discord_configs|webex_configs):/ {
      skip = 1; skip_ind = ind; next
    }
    { print }
  ' "$MON/alertmanager.yml" | sed -e "s#http://127.0.0.1:5001/alerts#$WEBHOOK#g" >"$DIR/alertmanager.yml"
  local far
  far=$(grep -Eo "https?://[^\"' ]+" "$DIR/alertmanager.yml" \
        | grep -Ev '^https?://(127\.[0-9.]+|localhost|\[::1\])([:/]|$)' || true)
  if [[ -n $far ]] || grep -Eq '^[^#]*(smarthost|smtp_|api_url)' "$DIR/alertmanager.yml"; then
    die "$DIR/alertmanager.yml would notify beyond loopback (${far:-smtp or api_url}); has monitoring/alertmanager.yml changed?"
  fi
  if ((START_HOOK)); then
    cat >"$DIR/webhook.py" <<'PY'
"""The demo stack's alert receiver: appends each Alertmanager notification to a file."""
import http.server
import sys

PORT, OUT = int(sys.argv[1]), sys.argv[2]


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(OUT, "ab") as f:
            f.write(body.strip() + b"\n")
        self.send_response(200)
        self.end_headers()

    def do_GET(self):  # readiness
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Hook).serve_forever()
PY
  fi
}

# launch NAME ARGV...: start one server, its output in $DIR/NAME.log, its pid in the pid file
launch() {
  local name=$1; shift
  if ((BACKGROUND)); then
    setsid "$@" </dev/null >>"$DIR/$name.log" 2>&1 &
  else
    "$@" </dev/null >>"$DIR/$name.log" 2>&1 &
  fi
  echo "$! $name" >>"$PIDFILE"
}

wait_ready() {
  local name=$1 port=$2 i
  for ((i = 0; i < 300; i++)); do
    http_ok "$port" /-/ready && return 0
    if ! kill -0 "$(awk -v n="$name" '$2 == n {print $1}' "$PIDFILE")" 2>/dev/null; then
      echo "stack.sh: $name exited; its log ($DIR/$name.log):" >&2
      tail -n 20 "$DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "stack.sh: $name not ready on port $port after 30 s; see $DIR/$name.log" >&2
  return 1
}

start_stack() {
  [[ -n $(live_pids) ]] && die "already running (data in $DIR); stop it with: $(stop_command)"
  for prog in "$PUSHGATEWAY" "$PROMETHEUS" "$ALERTMANAGER"; do
    [[ -x $prog ]] || die "$prog not found: run scripts/bootstrap.sh (it installs the Debian packages)"
  done
  local ports=("PUSHGATEWAY_PORT:$PGW_PORT" "PROMETHEUS_PORT:$PROM_PORT" "ALERTMANAGER_PORT:$AM_PORT")
  ((START_HOOK)) && ports+=("WEBHOOK_PORT:$HOOK_PORT")
  for pair in "${ports[@]}"; do
    if port_busy "${pair#*:}"; then
      die "port ${pair#*:} is in use: set ${pair%%:*} to a free port"
    fi
  done
  mkdir -p "$DIR" "$REGISTRY"
  rm -f "$PIDFILE"
  write_configs
  printf '%s\n' "$DIR" >"$(registry_entry "$DIR")"

  if ((START_HOOK)); then
    launch webhook "$PYTHON" "$DIR/webhook.py" "$HOOK_PORT" "$DIR/alerts.jsonl"
  fi
  launch pushgateway "$PUSHGATEWAY" --web.listen-address="127.0.0.1:$PGW_PORT" \
    --persistence.file="$DIR/pushgateway.db" --persistence.interval=1m --log.level=warn
  launch alertmanager "$ALERTMANAGER" --config.file="$DIR/alertmanager.yml" \
    --storage.path="$DIR/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" \
    --cluster.listen-address= --log.level=warn
  launch prometheus "$PROMETHEUS" --config.file="$DIR/prometheus.yml" \
    --storage.tsdb.path="$DIR/prometheus" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --web.enable-lifecycle --log.level=warn

  if ! { { ((START_HOOK == 0)) || wait_ready webhook "$HOOK_PORT"; } \
         && wait_ready pushgateway "$PGW_PORT" && wait_ready alertmanager "$AM_PORT" \
         && wait_ready prometheus "$PROM_PORT"; }; then
    stop_stack
    exit 1
  fi
  print_urls >"$DIR/urls"
  grep '^export ' "$DIR/urls" >"$DIR/env"
}

# how to stop this stack, from anywhere
stop_command() {
  if [[ $DIR == "$DEFAULT_DIR" ]]; then echo "$0 stop"; else echo "JOBREPORT_STACK_DIR=$DIR $0 stop"; fi
}

PYTHON=$(command -v python3 || echo /usr/bin/python3)
if [[ -n ${JOBREPORT_STACK_WEBHOOK:-} ]]; then
  WEBHOOK=$JOBREPORT_STACK_WEBHOOK
  START_HOOK=0
  [[ $WEBHOOK =~ ^https?://(127\.[0-9.]+|localhost|\[::1\])([:/]|$) ]] \
    || die "JOBREPORT_STACK_WEBHOOK=$WEBHOOK is not on loopback: the demo stack sends nothing beyond this machine"
else
  WEBHOOK=http://127.0.0.1:$HOOK_PORT/alerts
  START_HOOK=1
fi

BACKGROUND=0
case ${1:-} in
  "") ;;
  --background|-b) BACKGROUND=1 ;;
  stop)
    find_stack stop
    if [[ -n $(live_pids) ]]; then msg="stopped (data in $DIR removed)"; else msg="not running (nothing to stop)"; fi
    stop_stack
    echo "stack.sh: $msg"
    exit 0 ;;
  status)
    find_stack status
    if [[ -n $(live_pids) ]]; then cat "$DIR/urls"; else echo "stack.sh: not running"; exit 3; fi
    exit 0 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "stack.sh: unknown argument '$1' (usage: scripts/stack.sh [--background|stop|status|--help])" >&2
     exit 2 ;;
esac

start_stack
print_urls
if ((BACKGROUND)); then
  echo "pid file: $PIDFILE  (stop with: $(stop_command))"
  exit 0
fi
trap 'stop_stack; echo; echo "stack.sh: stopped"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "Running; Ctrl-C stops."
# return as soon as one server exits (or on Ctrl-C)
wait -n || true
echo "stack.sh: a server exited; the end of its log:" >&2
for name in webhook pushgateway alertmanager prometheus; do
  grep -q " $name\$" "$PIDFILE" || continue
  pid=$(awk -v n="$name" '$2 == n {print $1}' "$PIDFILE")
  kill -0 "$pid" 2>/dev/null || { echo "== $name" >&2; tail -n 20 "$DIR/$name.log" >&2; }
done
exit 1
