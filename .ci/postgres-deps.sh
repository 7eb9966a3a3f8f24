#!/usr/bin/env bash
# PostgreSQL for tests/test_tracking_stack.py and bench/bench_tracking.py (the team's tracking stack: a real
# server started by the tests on a temporary folder and a 127.0.0.1 port; nothing runs as a system service).
# Debian's `postgresql` package: initdb and pg_ctl in /usr/lib/postgresql/<version>/bin; runuser (util-linux) lets
# the tests start it as the `postgres` user when they run as root. Does nothing when initdb is already there.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # the package's own cluster service is not needed (the tests start their own server)
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
  fi
else
  echo "postgres-deps: install PostgreSQL (Debian: apt-get install postgresql) for tests/test_tracking_stack.py" >&2
fi
