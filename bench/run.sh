#!/usr/bin/env bash
# Runs pwreset's benchmark matrix on this machine and writes BENCHMARKS.md.
# Every server and every load stays on 127.0.0.1. Needs PostgreSQL on 127.0.0.1:5432
# (BENCH_PG_URL) for the PostgreSQL rows; set BENCH_DURATION to change the 5 s runs.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5s}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PORT_A=50061
PORT_B=50062
work=$(mktemp -d)
rows="$work/rows.txt"
: > "$rows"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

cargo build --release --bin pwreset --example loadgen
BIN=target/release/pwreset
LOAD=target/release/examples/loadgen
KEY=$(head -c 32 /dev/urandom | base64)

# Limits off and reset without a usable password allowed, so the load measures the
# service rather than its abuse defences; everything else is the production default.
server_flags=(
  --secret-key "$KEY" --rate-request-token off --rate-validate-token off --rate-confirm off
  --rate-verify-password off --account-token-limit off --verify-failure-limit 0
  --allow-reset-without-password
)

start_server() { # url port -> pid on stdout (call without $(…) so pids stays in this shell)
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    echo "port $2 is already in use: stop whatever listens there first" >&2; exit 1
  fi
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$2" --database-url "$1" "${server_flags[@]}" \
    --log-format text 2>>"$work/server.log" >/dev/null &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "$pid"; return; fi
    sleep 0.05
  done
  echo "server on port $2 did not start" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

load() { # label case concurrency [extra args…]
  local label=$1 case=$2 conc=$3; shift 3
  echo ">> $label $case c=$conc" >&2
  "$LOAD" --target "http://127.0.0.1:$PORT_A" --label "$label" --case "$case" --concurrency "$conc" \
    --duration "$DURATION" "$@" | tee -a "$rows" | sed 's/^/   /' >&2
}

new_pg_db() {
  local name="pwreset_bench_$(date +%s%N)"
  psql "$PG_URL" -qAtc "CREATE DATABASE $name" >/dev/null
  echo "${PG_URL%/*}/$name"
}

for db in sqlite postgres; do
  if [ "$db" = sqlite ]; then url="sqlite://$work/bench.db?mode=rwc"; else url=$(new_pg_db); fi
  start_server "$url" "$PORT_A" > "$work/pid"; pid=$(cat "$work/pid")
  for conc in 1 16 64; do
    load "$db" health "$conc"
    load "$db" validate "$conc"
    load "$db" validate-unknown "$conc"
    load "$db" request-known "$conc" --accounts 256
    load "$db" request-unknown "$conc"
    # The argon2 bound right before the calls compared with it, so that both see the
    # machine in the same state.
    if [ "$conc" != 1 ]; then load "$db" argon2-bound "$conc"; fi
    load "$db" confirm "$conc" --accounts 1500
    load "$db" verify "$conc"
    load "$db" verify-unknown "$conc"
  done
  load "$db" enumeration 16 --accounts 256
  load "$db" verify-enumeration 16
  load "$db" events 4 --subscribers 100 --accounts 64

  if [ "$db" = postgres ]; then
    start_server "$url" "$PORT_B" > "$work/pid"; pid_b=$(cat "$work/pid")
    load "$db" events 4 --subscribers 100 --accounts 64 --target-b "http://127.0.0.1:$PORT_B"
    stop_server "$pid_b"
  fi
  stop_server "$pid"
  if [ "$db" = postgres ]; then psql "$PG_URL" -qAtc "DROP DATABASE ${url##*/} WITH (FORCE)" >/dev/null; fi
done
# Peak memory under a flood of Confirm calls, on a fresh server.
start_server "sqlite://$work/flood.db?mode=rwc" "$PORT_B" > "$work/pid"; pid_f=$(cat "$work/pid")
PORT_A_SAVED=$PORT_A; PORT_A=$PORT_B
load sqlite confirm-flood 1000 --server-pid "$pid_f"
PORT_A=$PORT_A_SAVED
stop_server "$pid_f"

# The argon2 bound: the same pool and parameters with no RPC around it.
for conc in 2 16; do
  load none argon2-bound "$conc"
done

{ echo "REV $(git rev-parse --short HEAD)"; cat "$rows"; } > bench/last-run.txt
python3 bench/report.py bench/last-run.txt > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
