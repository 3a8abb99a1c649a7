#!/usr/bin/env bash
# Make sure the services the tests talk to are up: Redis and PostgreSQL on 127.0.0.1.
# Locally it starts (or installs) what it can; with CI=true anything still missing is an error, never a skip.
set -uo pipefail

missing=()

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || missing+=("Redis at 127.0.0.1:6379")
fi

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
  fi
  pg_up || missing+=("PostgreSQL at 127.0.0.1:5432")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "services: missing: ${missing[*]}" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "services: the tests that need them will be skipped (CI=true makes this an error)" >&2
fi
exit 0
