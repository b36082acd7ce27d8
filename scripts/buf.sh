#!/usr/bin/env bash
# buf lint (STANDARD rules, see buf.yaml) and buf breaking against the main branch.
# buf comes from the @bufbuild/buf npm package, installed under target/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/tools
if [ ! -x "$tools/node_modules/.bin/buf" ]; then
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" @bufbuild/buf@1.75.0 >/dev/null
fi
buf="$tools/node_modules/.bin/buf"
"$buf" lint
if git rev-parse --verify --quiet main >/dev/null; then
  "$buf" breaking --against '.git#branch=main'
else
  "$buf" breaking --against '.git#ref=HEAD'
fi
echo "buf: ok"
