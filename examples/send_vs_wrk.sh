#!/bin/sh
# Measures the `send` example from outside against wrk posting the same
# body to the same nginx, at the same concurrency, in one sitting:
#
#     examples/send_vs_wrk.sh [memory|sqlite] [EVENTS]
#
# Needs nginx and wrk (Debian: nginx-light, wrk). Starts nginx on loopback
# answering 204 to every POST, runs wrk for 5 s with as many connections as
# `send` has workers by default (64 in memory, 256 on SQLite) posting a
# 512-byte JSON body, then pipes EVENTS (40 000) lines of the same size
# into the release build of `send` (its defaults; SQLite durable, FULL)
# and times the whole process. Prints one line of figures; the ratio is
# send's events/s over wrk's requests/s.
set -eu
store_kind="${1:-memory}"
events="${2:-40000}"
if [ -n "${BIN:-}" ]; then
    bin="$BIN"
else
    cargo build -q --release --example send
    bin="${CARGO_TARGET_DIR:-target}/release/examples"
fi
work="$(mktemp -d)"
chmod 755 "$work"
trap 'kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM

case "$store_kind" in
memory) send_store=memory connections=64 ;;
sqlite) send_store="sqlite:$work/send.db" connections=256 ;;
*) echo "usage: $0 [memory|sqlite] [EVENTS]" >&2; exit 2 ;;
esac

port=18099
. "$(dirname "$0")/nginx_204.sh"
nginx_204 "$port"

pad=$(head -c 440 /dev/zero | tr '\0' x)
body="{\"event\":\"iq.status_updated\",\"data\":{\"pad\":\"$pad\"}}"
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$body'
LUA
wrk -t 2 -c "$connections" -d 5s -s "$work/post.lua" "http://127.0.0.1:$port/" >"$work/wrk.txt"
wrk_rate=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")

awk -v n="$events" -v body="$body" 'BEGIN { for (i = 0; i < n; i++) print body }' >"$work/events.jsonl"
start=$(date +%s.%N)
"$bin/send" --preset deepsmith --url "http://127.0.0.1:$port/" --secret bench-secret-bench-secret \
    --store "$send_store" --allow-http --allow-private \
    <"$work/events.jsonl" >"$work/attempts.jsonl" 2>"$work/send.err"
end=$(date +%s.%N)
tail -n 1 "$work/attempts.jsonl" >"$work/summary"
grep -q "\"delivered\":$events" "$work/summary" || { echo "send did not deliver every event:" >&2; cat "$work/summary" "$work/send.err" >&2; exit 1; }
awk -v start="$start" -v end="$end" -v events="$events" -v store="$store_kind" -v connections="$connections" -v wrk="$wrk_rate" 'BEGIN {
    send = events / (end - start)
    printf "store=%s connections=%d events=%d send_seconds=%.2f send_per_sec=%.0f wrk_per_sec=%.0f send_to_wrk=%.2f\n",
        store, connections, events, end - start, send, wrk, send / wrk
}'
