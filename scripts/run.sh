#!/usr/bin/env bash
# Serve the app with gunicorn on $HOST:$PORT. Uses the MinIO answering at $MINIO_ENDPOINT, or
# starts a local one there (scripts/minio.sh) and stops it again on exit (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HOST:=127.0.0.1}" "${PORT:=5000}" "${MINIO_ENDPOINT:=127.0.0.1:9000}"
: "${WORKERS:=2}" "${THREADS:=128}"
scheme=http; [ "${MINIO_SECURE:-0}" = 1 ] && scheme=https
mkdir -p data

minio_ready() { curl -fsS -o /dev/null --max-time 2 "$scheme://$MINIO_ENDPOINT/minio/health/ready"; }

minio_pid="" app_pid=""
stop_all() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
  [ -n "$minio_pid" ] && kill "$minio_pid" 2>/dev/null && wait "$minio_pid" 2>/dev/null
  true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if minio_ready; then
  echo "using the MinIO already answering at $MINIO_ENDPOINT"
else
  ./scripts/minio.sh > data/minio.log 2>&1 &
  minio_pid=$!
  for _ in $(seq 1 150); do minio_ready && break; sleep 0.2; done
  minio_ready || { echo "MinIO did not start; see data/minio.log" >&2; exit 1; }
  echo "started MinIO at $MINIO_ENDPOINT (log: data/minio.log)"
fi

echo "tus-minio on http://$HOST:$PORT/  (tus endpoint http://$HOST:$PORT/files/)"
.venv/bin/python -m gunicorn tus_server.wsgi:app --bind "$HOST:$PORT" \
  -c python:tus_server.gunicorn_conf --workers "$WORKERS" --threads "$THREADS" \
  --access-logfile - &
app_pid=$!
wait "$app_pid"
