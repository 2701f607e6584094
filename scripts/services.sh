#!/usr/bin/env bash
# Make sure PostgreSQL (5432) and Redis (6379) answer on 127.0.0.1; start them if they are installed
# but stopped. The tests use the real servers; under CI=true a missing one fails the run.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! up 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
for _ in $(seq 1 30); do
  up 6379 && up 5432 && exit 0
  sleep 1
done
up 6379 || echo "services: Redis is not answering on 127.0.0.1:6379" >&2
up 5432 || echo "services: PostgreSQL is not answering on 127.0.0.1:5432" >&2
exit 0
