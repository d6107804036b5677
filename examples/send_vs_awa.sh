#!/bin/sh
# Measures the `send` example on its PostgreSQL store against the awa job
# queue (benches/awa: awa-send) doing the same work per job, in one sitting:
#
#     examples/send_vs_awa.sh POSTGRES_URL [EVENTS]
#
# POSTGRES_URL (default $WEBHOOKS_POSTGRES_URL) is a server whose role may
# create databases; each run gets a fresh one, dropped afterwards. Needs
# nginx, psql and, for the CPU figures, Linux /proc. Starts nginx on
# loopback answering 204 to every POST, then:
#   awa   awa-send feeds EVENTS (40 000) jobs in COPY batches to an awa
#         worker with AWA_CONCURRENCY (256, as send) workers, each signing a 512-byte JSON body
#         (HMAC-SHA256) and posting it; timed from the first insert until
#         awa counts every job done.
#   send  EVENTS lines of the same body piped into the release build of
#         `send --store postgres://...` (its defaults: 256 workers); the whole
#         process is timed, as in send_vs_wrk.sh.
# For each: wall seconds, rate, the process's CPU seconds (user+sys), and
# the PostgreSQL server's CPU seconds over the run, database creation and
# drop included for both: utime+stime+cutime+cstime of the postmaster and
# its children (backends that exited are in the postmaster's cutime/cstime),
# so anything else using that server at the time counts too. awa's figure
# includes installing its schema, some 3.5 s of server CPU on 2 cores
# (send's, 0.1 s): EVENTS=1 shows each setup alone.
# BIN (directory holding `send`) and AWA_BIN (the awa-send binary) skip the
# builds. Prints one line of figures last; send_to_awa is send's rate over
# awa's.
set -eu
pg_url="${1:-${WEBHOOKS_POSTGRES_URL:-}}"
events="${2:-40000}"
[ -n "$pg_url" ] || { echo "usage: $0 POSTGRES_URL [EVENTS] (or set WEBHOOKS_POSTGRES_URL)" >&2; exit 2; }
if [ -n "${BIN:-}" ]; then
    bin="$BIN"
else
    cargo build -q --release --example send
    bin="${CARGO_TARGET_DIR:-target}/release/examples"
fi
if [ -n "${AWA_BIN:-}" ]; then
    awa_bin="$AWA_BIN"
else
    # Its own workspace, so its own target directory unless one is set.
    awa_dir="$(dirname "$0")/../benches/awa"
    cargo build -q --release --manifest-path "$awa_dir/Cargo.toml"
    awa_bin="${CARGO_TARGET_DIR:-$awa_dir/target}/release/awa-send"
fi
work="$(mktemp -d)"
chmod 755 "$work"
db="webhooks_send_bench_$$"
cleanup() {
    kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
    psql -X -q "$pg_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=18098
. "$(dirname "$0")/nginx_204.sh"
nginx_204 "$port"

# The server's postmaster: the parent of a backend, read while it lives.
postmaster=$(printf '%s\n' 'SELECT pg_backend_pid() AS backend \gset' '\setenv BACKEND :backend' \
    '\! awk "{ print \$4 }" /proc/$BACKEND/stat' | psql -X -q -At "$pg_url")
tick=$(getconf CLK_TCK)
# CPU ticks the server has used: the postmaster and its children, with the
# children it has reaped (fields 14-17 of /proc/PID/stat).
pg_ticks() {
    sleep 0.2 # let the postmaster reap the backends that just ended
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$postmaster" '
        $2 == "(postgres)" { pid = $1; sub(/^.*\) /, ""); if (pid == pm || $2 == pm) t += $12 + $13 + $14 + $15 }
        END { print t + 0 }'
}
# Runs "$@", leaving its user+sys CPU seconds in $work/cpu; returns its status.
timed() {
    status=0
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -o "$work/time" "$@" || status=$?
        tail -n 1 "$work/time" | awk '{ print $1 + $2 }' >"$work/cpu"
    else # the shell's `times`: children's user and sys, before and after
        times >"$work/t0"
        "$@" || status=$?
        times >"$work/t1"
        cat "$work/t0" "$work/t1" | awk 'NR % 2 == 0 { gsub(/s/, ""); split($1, u, "m"); split($2, s, "m")
            t[NR] = u[1] * 60 + u[2] + s[1] * 60 + s[2] } END { print t[4] - t[2] }' >"$work/cpu"
    fi
    return $status
}

pad=$(head -c 440 /dev/zero | tr '\0' x)
body="{\"event\":\"iq.status_updated\",\"data\":{\"pad\":\"$pad\"}}"
awk -v n="$events" -v body="$body" 'BEGIN { for (i = 0; i < n; i++) print body }' >"$work/events.jsonl"

# awa: it creates, migrates and drops its own database.
pg0=$(pg_ticks)
start=$(date +%s.%N)
timed "$awa_bin" --database-url "$pg_url" --url "http://127.0.0.1:$port/" --secret bench-secret-bench-secret \
    --events "$events" --concurrency "${AWA_CONCURRENCY:-256}" >"$work/awa.out" 2>"$work/awa.err" || { cat "$work/awa.out" "$work/awa.err" >&2; exit 1; }
end=$(date +%s.%N)
pg1=$(pg_ticks)
awa_cpu=$(cat "$work/cpu")
awa_seconds=$(sed -n 's/^awa .*seconds=\([0-9.]*\).*/\1/p' "$work/awa.out")
[ -n "$awa_seconds" ] || { echo "awa-send printed no result:" >&2; cat "$work/awa.out" "$work/awa.err" >&2; exit 1; }
awa_process=$(awk -v start="$start" -v end="$end" 'BEGIN { printf "%.2f", end - start }')

# send: a fresh database, the whole process timed, then dropped.
pg2=$(pg_ticks)
psql -X -q "$pg_url" -c "CREATE DATABASE $db"
store_url=$(printf '%s' "$pg_url" | sed "s#^\(postgres[a-z]*://[^/]*\)/[^?]*#\1/$db#")
case "$store_url" in *"/$db"*) ;; *) echo "POSTGRES_URL needs a database path (.../postgres)" >&2; exit 2 ;; esac
start=$(date +%s.%N)
timed "$bin/send" --preset deepsmith --url "http://127.0.0.1:$port/" --secret bench-secret-bench-secret \
    --store "$store_url" --allow-http --allow-private \
    <"$work/events.jsonl" >"$work/attempts.jsonl" 2>"$work/send.err" ||
    { echo "send failed:" >&2; tail -n 1 "$work/attempts.jsonl" >&2; cat "$work/send.err" >&2; exit 1; }
end=$(date +%s.%N)
psql -X -q "$pg_url" -c "DROP DATABASE $db WITH (FORCE)"
pg3=$(pg_ticks)
send_cpu=$(cat "$work/cpu")
tail -n 1 "$work/attempts.jsonl" >"$work/summary"
grep -q "\"delivered\":$events[,}]" "$work/summary" || { echo "send did not deliver every event:" >&2; cat "$work/summary" "$work/send.err" >&2; exit 1; }

awk -v events="$events" -v start="$start" -v end="$end" -v awa="$awa_seconds" -v awa_process="$awa_process" \
    -v send_cpu="$send_cpu" -v awa_cpu="$awa_cpu" -v tick="$tick" \
    -v pg_awa="$((pg1 - pg0))" -v pg_send="$((pg3 - pg2))" 'BEGIN {
    send = end - start
    printf "awa:  seconds=%.2f (process %.2f) per_sec=%.0f cpu_s=%.2f pg_cpu_s=%.2f\n",
        awa, awa_process, events / awa, awa_cpu, pg_awa / tick
    printf "send: seconds=%.2f per_sec=%.0f cpu_s=%.2f pg_cpu_s=%.2f\n",
        send, events / send, send_cpu, pg_send / tick
    printf "events=%d send_per_sec=%.0f awa_per_sec=%.0f send_to_awa=%.2f send_cpu_s=%.2f awa_cpu_s=%.2f pg_cpu_s_send=%.2f pg_cpu_s_awa=%.2f\n",
        events, events / send, events / awa, awa / send, send_cpu, awa_cpu, pg_send / tick, pg_awa / tick
}'
