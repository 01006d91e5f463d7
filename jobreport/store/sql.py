"""The SQL the store runs, on SQLite (sqlite3) and on any SQLAlchemy database alike: plain
statements with ``:name`` parameters, in one place."""

from __future__ import annotations

from jobreport.outcomes import OUTCOMES, SKIPPED, SUCCESS
from jobreport.result import RESULT_FIELDS
from jobreport.spec import STORED

#: What a run is held to (thresholds, schedule): a column per stored field of its spec.
SPEC_COLUMNS = tuple(f.name for f in STORED)
START_COLUMNS = ("group_key", "job", "host", "pid", "pid_start", "started", *SPEC_COLUMNS,
                 "command", "uid", "pid_ns", "child_pid", "child_pid_start")
#: What a run reports at its end: a column per field of ``RunResult``, and the seq it made.
END_COLUMNS = (*(f.name for f in RESULT_FIELDS), "closed_seq")
NOT_SKIPPED = "(outcome IS NULL OR outcome <> 'skipped')"
FAILED = "(" + ", ".join(f"'{o}'" for o in OUTCOMES if o not in (SUCCESS, SKIPPED)) + ")"

INSERT_RUN = (
    f"INSERT INTO jobreport_runs ({', '.join(START_COLUMNS + END_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in START_COLUMNS + END_COLUMNS)})"
)
END_RUN = (
    f"UPDATE jobreport_runs SET {', '.join(f'{c} = :{c}' for c in END_COLUMNS)} "
    "WHERE id = :id"
)
SPEC_OF_RUN = (
    f"UPDATE jobreport_runs SET {', '.join(f'{c} = :{c}' for c in SPEC_COLUMNS)} "
    "WHERE id = :id"
)
# a change to a group revives a retired one (a new run of a deleted job)
BUMP = "UPDATE jobreport_groups SET seq = seq + 1, retired = NULL WHERE group_key = :k"
SEQ = "SELECT seq FROM jobreport_groups WHERE group_key = :k"
NEW_GROUP = ("{insert} INTO jobreport_groups (group_key, job, seq) "
             "VALUES (:k, :job, 0) {conflict}")
#: The same in a store made before schema 5: its groups.delivered_seq (per sink since
#: schema 2, in jobreport_deliveries) is NOT NULL without a default.
NEW_GROUP_V4 = ("{insert} INTO jobreport_groups (group_key, job, seq, delivered_seq) "
                "VALUES (:k, :job, 0, 0) {conflict}")
COUNT = "UPDATE jobreport_counts SET n = n + 1 WHERE group_key = :k AND outcome = :o"
NEW_COUNT = "{insert} INTO jobreport_counts (group_key, outcome, n) VALUES (:k, :o, 0) {conflict}"
COUNTS = "SELECT outcome, n FROM jobreport_counts WHERE group_key = :k"
GROUP = (
    "SELECT g.*, (SELECT count(*) FROM jobreport_runs r "
    "WHERE r.group_key = :k AND r.ended IS NULL) AS running "
    "FROM jobreport_groups g WHERE g.group_key = :k"
)
# the newest run is the newest recorded (row id, closed_seq), never the latest clock
# reading: a clock stepped back must not hide a failure
NEWEST_START = (
    f"SELECT started, outcome, {', '.join(SPEC_COLUMNS)} "
    f"FROM jobreport_runs WHERE group_key = :k AND {NOT_SKIPPED} ORDER BY id DESC LIMIT 1"
)
# unsuccessful runs recorded after the last success (in record order: closed_seq); skipped
# runs are neither. Kept in jobreport_groups.failure_streak since schema 6: this fills it in
# an older store
CONSECUTIVE_FAILURES = (
    "SELECT count(*) AS n FROM jobreport_runs "
    f"WHERE group_key = :k AND outcome IN {FAILED} AND closed_seq > COALESCE(("
    "SELECT max(closed_seq) FROM jobreport_runs "
    "WHERE group_key = :k AND outcome = 'success'), 0)"
)
#: The last successful runs of a group, newest first (an older store's typical values).
RECENT_SUCCESSES = (
    "SELECT size, duration FROM jobreport_runs WHERE group_key = :k AND outcome = 'success' "
    "ORDER BY closed_seq DESC LIMIT :n"
)
RECENT_SIZES = (
    "SELECT size FROM jobreport_runs WHERE group_key = :k AND outcome = 'success' "
    "AND size IS NOT NULL ORDER BY closed_seq DESC LIMIT :n"
)
LAST_END = (
    "SELECT * FROM jobreport_runs "
    f"WHERE group_key = :k AND {NOT_SKIPPED} AND ended IS NOT NULL "
    "ORDER BY closed_seq DESC, id DESC LIMIT 1"
)
RUN_GROUP = "SELECT group_key, job, ended FROM jobreport_runs WHERE id = :id"
OPEN_ON_HOST = (
    "SELECT id, pid, pid_start, child_pid, child_pid_start, started, host "
    "FROM jobreport_runs WHERE group_key = :k AND ended IS NULL AND host = :host "
    "AND (pid_ns IS NULL OR pid_ns = :ns)"
)
OPEN_IN_GROUP = (
    "SELECT id, pid, pid_start, child_pid, child_pid_start, started, host "
    "FROM jobreport_runs WHERE group_key = :k AND ended IS NULL"
)
OPEN_RUN = "SELECT id FROM jobreport_runs WHERE uid = :u AND group_key = :k AND ended IS NULL"
ABANDON = ("UPDATE jobreport_runs SET ended = :ended, duration = :duration, "
           "outcome = :outcome, closed_seq = :seq WHERE id = :id")
HEARTBEAT = "UPDATE jobreport_groups SET last_heartbeat = :t WHERE group_key = :k"
PUSHED = "UPDATE jobreport_groups SET pushed = :p WHERE group_key = :k"
PUSHED_OF = "SELECT pushed FROM jobreport_groups WHERE group_key = :k"
RETIRE = ("UPDATE jobreport_groups SET retired = COALESCE(retired, :now) "
          "WHERE group_key = :k")
RETIRED = "SELECT retired FROM jobreport_groups WHERE group_key = :k"
RETIRE_DELIVERIES = "UPDATE jobreport_deliveries SET last_error = NULL WHERE group_key = :k"

# --- per sink delivery marks ---------------------------------------------------------------
NEW_DELIVERY = ("{insert} INTO jobreport_deliveries (group_key, sink, delivered_seq) "
                "VALUES (:k, :sink, :base) {conflict}")
#: How far the other sinks got with a group: where a sink new to it starts.
DELIVERED_ELSEWHERE = ("SELECT max(delivered_seq) AS s FROM jobreport_deliveries "
                       "WHERE group_key = :k AND sink <> :sink")
DELIVERED = ("UPDATE jobreport_deliveries SET delivered_seq = :s, last_attempt = :now, "
             "last_error = :e, left_out = :left WHERE group_key = :k AND sink = :sink "
             "AND delivered_seq <= :s")
FAILED_DELIVERY = ("UPDATE jobreport_deliveries SET last_error = :e, last_attempt = :now "
                   "WHERE group_key = :k AND sink = :sink")
# A sink that was never given a group starts where the other sinks got with it: a group
# no sink has had is pending for every sink (runs kept before any sink was configured), one
# another sink has is pending for a new sink only once it changes (docs/sinks.md)
_MARK = ("COALESCE(d.delivered_seq, (SELECT max(x.delivered_seq) FROM jobreport_deliveries x "
         "WHERE x.group_key = g.group_key), 0)")
PENDING = (
    f"SELECT g.group_key, g.job, {_MARK} AS delivered_seq, "
    "d.last_error FROM jobreport_groups g "
    "LEFT JOIN jobreport_deliveries d ON d.group_key = g.group_key AND d.sink = :sink "
    f"WHERE g.retired IS NULL AND g.seq > {_MARK} ORDER BY g.group_key"
)
PENDING_RUNS = ("SELECT count(*) AS n, min(ended) AS since FROM jobreport_runs "
                "WHERE group_key = :k AND closed_seq > :d")
UNDELIVERED = (
    "SELECT g.group_key, g.job, d.sink, COALESCE(d.delivered_seq, 0) AS delivered_seq, "
    "d.last_error FROM jobreport_groups g "
    "LEFT JOIN jobreport_deliveries d ON d.group_key = g.group_key "
    "WHERE g.retired IS NULL AND g.seq > COALESCE(d.delivered_seq, 0) "
    "ORDER BY g.group_key, d.sink"
)
HAS_DELIVERY = "SELECT 1 AS x FROM jobreport_deliveries WHERE group_key = :k AND sink = :sink"
DELIVERED_SEQ = ("SELECT delivered_seq FROM jobreport_deliveries "
                 "WHERE group_key = :k AND sink = :sink")
ADD_COUNT = "UPDATE jobreport_counts SET n = n + :n WHERE group_key = :k AND outcome = :o"
#: Move a forward-only timestamp (fixed column names only) to :v if that is later.
LATER = ("UPDATE jobreport_groups SET {column} = :v WHERE group_key = :k "
         "AND ({column} IS NULL OR {column} < :v)")
VERSION = "SELECT value FROM jobreport_meta WHERE key = 'schema_version'"
#: Every key of the store's own: ``schema_version``; ``adopts`` in a store created new (its
#: groups adopt what a sink holds before their first push); ``groups_delivered_seq`` in one
#: made before schema 5 (``NEW_GROUP_V4``).
META = "SELECT key, value FROM jobreport_meta"
#: Lock the group's row until the transaction ends (PostgreSQL; SQLite writes are serial).
LOCK_GROUP = "UPDATE jobreport_groups SET seq = seq WHERE group_key = :k"
#: What the store's tables take on PostgreSQL, indexes and TOAST included.
PG_SIZE = (
    "SELECT sum(pg_total_relation_size(c.oid)) AS n FROM pg_class c "
    "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind = 'r' "
    "AND c.relname IN ('jobreport_runs', 'jobreport_groups', 'jobreport_deliveries', "
    "'jobreport_counts', 'jobreport_meta') AND s.nspname = ANY (current_schemas(false))"
)
