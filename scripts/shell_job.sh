#!/bin/sh
# Archive a directory: a plain POSIX sh job that reports through `jobreport run`.
#
#   jobreport run --job archive --expect-every 24h -- sh scripts/shell_job.sh /srv/www /var/backups/www
#
# jobreport run reports duration, outcome, exit code, CPU and memory by itself. A job adds
# figures of its own by appending "name value" lines to the file named in
# $JOBREPORT_METRICS_FILE (set by jobreport run); each becomes a gauge pushed with the run.
# Run without jobreport, the lines go to /dev/null and the job works the same.
#
# The archive is written under a temporary name, checked with `gzip -t`, and only then
# renamed into place, so the destination never holds a partial archive.
set -eu

src=${1:?usage: shell_job.sh SOURCE_DIR DEST_DIR}
dest=${2:?usage: shell_job.sh SOURCE_DIR DEST_DIR}
metrics=${JOBREPORT_METRICS_FILE:-/dev/null}

[ -d "$src" ] || { echo "shell_job: $src is not a directory" >&2; exit 2; }
[ -d "$dest" ] || { echo "shell_job: $dest is not a directory: create it first" >&2; exit 2; }

name=$(basename "$src")-$(date -u +%Y%m%dT%H%M%SZ).tar.gz
tmp=$(mktemp "$dest/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
trap 'exit 143' TERM  # jobreport run --timeout sends SIGTERM: clean up on the way out
trap 'exit 130' INT

tar -C "$src" -czf "$tmp" .
gzip -t "$tmp"
files=$(tar -tzf "$tmp" | grep -vc '/$' || true)
bytes=$(wc -c < "$tmp" | tr -d ' ')
mv "$tmp" "$dest/$name"
sync "$dest/$name" 2>/dev/null || sync

echo "archive_files $files" >> "$metrics"
echo "archive_bytes $bytes" >> "$metrics"
echo "$dest/$name: $files files, $bytes bytes"
