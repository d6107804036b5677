#!/bin/sh
# Measures the `send` example from outside against the bench's end-to-end
# figure on the same store, at the same time of day on the same machine:
#
#     examples/send_vs_bench.sh [memory|sqlite] [EVENTS]
#
# Builds both in release, starts the bench's receiver (`bench --serve`: hyper,
# 204, body discarded), pipes EVENTS (20 000) generated lines of 512-byte
# bodies into `send`, and times the whole process (start to exit, once
# every delivery is recorded). Then runs the bench's baseline and end to
# end on as many deliveries. Prints one line of figures; the ratio is
# send's events/s over the bench's end-to-end deliveries/s.
set -eu
store_kind="${1:-memory}"
events="${2:-20000}"
# BIN names a directory holding release builds of both, to skip building.
if [ -n "${BIN:-}" ]; then
    bin="$BIN"
else
    cargo build -q --release --example send --example bench
    bin="${CARGO_TARGET_DIR:-target}/release/examples"
fi
work="$(mktemp -d)"
trap 'kill "$receiver" 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM

case "$store_kind" in
memory) send_store=memory bench_store=memory ;;
sqlite) send_store="sqlite:$work/send.db" bench_store="sqlite:$work/bench.db" ;;
*) echo "usage: $0 [memory|sqlite] [EVENTS]" >&2; exit 2 ;;
esac

# 512-byte bodies, as the bench renders.
pad=$(head -c 440 /dev/zero | tr '\0' x)
awk -v n="$events" -v pad="$pad" 'BEGIN { for (i = 0; i < n; i++) printf "{\"event\":\"iq.status_updated\",\"data\":{\"pad\":\"%s\"}}\n", pad }' >"$work/events.jsonl"

"$bin/bench" --serve >"$work/url" &
receiver=$!
while [ ! -s "$work/url" ]; do sleep 0.1; done
url="$(cat "$work/url")"

start=$(date +%s.%N)
"$bin/send" --preset deepsmith --url "$url" --secret bench-secret \
    --store "$send_store" --allow-http --allow-private \
    <"$work/events.jsonl" >"$work/attempts.jsonl" 2>"$work/send.err"
end=$(date +%s.%N)
tail -n 1 "$work/attempts.jsonl" >"$work/summary"
grep -q "\"delivered\":$events" "$work/summary" || { echo "send did not deliver every event:" >&2; cat "$work/summary" "$work/send.err" >&2; exit 1; }
kill "$receiver" 2>/dev/null || true

"$bin/bench" --store "$bench_store" --deliveries "$events" --figures end-to-end >"$work/bench.json"
awk -v start="$start" -v end="$end" -v events="$events" -v store="$store_kind" '
    /"requests_per_sec"/ { gsub(/[,]/, "", $2); baseline = $2 }
    /"deliveries_per_sec"/ && !e2e { gsub(/[,]/, "", $2); e2e = $2 }
    END {
        send = events / (end - start)
        printf "store=%s events=%d send_seconds=%.2f send_per_sec=%.0f bench_end_to_end_per_sec=%.0f baseline_per_sec=%.0f send_to_bench=%.2f\n",
            store, events, end - start, send, e2e, baseline, send / e2e
    }' "$work/bench.json"
