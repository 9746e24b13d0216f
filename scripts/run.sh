#!/usr/bin/env bash
# Serve the app (`tus-minio serve`: gunicorn) on $HOST:$PORT. Uses the S3 server answering at
# $MINIO_ENDPOINT (MinIO or any other; the app checks its conditional writes at start), or starts
# a local MinIO there (scripts/minio.sh, data in $MINIO_DATA, log in $MINIO_LOG) and stops it
# again on exit (Ctrl-C stops both). Once the app answers it prints, once, where everything is;
# the probes before that are silent (no `curl: (7)` for every try while MinIO starts).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HOST:=127.0.0.1}" "${PORT:=5000}" "${MINIO_ENDPOINT:=127.0.0.1:9000}"
: "${WORKERS:=2}" "${THREADS:=128}" "${MINIO_DATA:=$PWD/data/minio}" "${MINIO_LOG:=data/minio.log}"
export HOST PORT MINIO_ENDPOINT WORKERS THREADS MINIO_DATA
scheme=http; [ "${MINIO_SECURE:-0}" = 1 ] && scheme=https
mkdir -p "$(dirname "$MINIO_LOG")"

# -s without -S: a refused connection is the expected answer while a server starts.
minio_ready() { curl -fs -o /dev/null --max-time 2 "$scheme://$MINIO_ENDPOINT/minio/health/ready"; }
# Any S3 server answers an unsigned request for its bucket list in S3's XML: the list, or (the
# usual answer) an <Error> such as AccessDenied. MinIO's health URL is MinIO's alone.
s3_answers() {
  local body
  body=$(curl -s --max-time 2 "$scheme://$MINIO_ENDPOINT/" 2>/dev/null) || return 1
  case "$body" in *'<Error>'* | *'<ListAllMyBucketsResult'*) return 0 ;; esac
  return 1
}
http_answers() { curl -s -o /dev/null --max-time 2 "$scheme://$MINIO_ENDPOINT/"; }
# Any HTTP answer counts (a 503 from /healthz is the app answering that MinIO is not).
app_answers() { curl -s -o /dev/null --max-time 2 "http://$url_host:$PORT/healthz"; }

minio_pid="" app_pid="" app_status=0
stop_all() {
  trap '' INT TERM  # a second Ctrl-C must not leave MinIO running
  if [ -n "$app_pid" ]; then
    kill "$app_pid" 2>/dev/null || true  # it may have stopped already (Ctrl-C reaches it too)
    wait "$app_pid" 2>/dev/null || app_status=$?
    app_pid=""
  fi
  [ -n "$minio_pid" ] && kill "$minio_pid" 2>/dev/null && wait "$minio_pid" 2>/dev/null
  true
}
trap stop_all EXIT
# Ctrl-C or a TERM is the asked-for way to stop: exit 0 once the app has shut down cleanly
# (gunicorn exits 0 after it), its own status if it did not.
trap 'stop_all; exit "$app_status"' INT TERM

case "$HOST" in 0.0.0.0|::|'') url_host=127.0.0.1 ;; *) url_host=$HOST ;; esac
case "${TUS_AUTH:-}" in
  jwt) access="bearer tokens (TUS_AUTH=jwt); mint one: .venv/bin/tus-minio token --sub you" ;;
  none) access="no access control (TUS_AUTH=none): anyone who reaches the port" ;;
  *) access="open to this machine only (set TUS_AUTH=jwt to require tokens)" ;;
esac

if s3_answers; then
  storage_label="S3:           "
  minio_where="$scheme://$MINIO_ENDPOINT (already running; its data is wherever it keeps it)"
elif http_answers; then
  echo "$scheme://$MINIO_ENDPOINT answers, but not as an S3 server; set MINIO_ENDPOINT" >&2
  exit 1
else
  storage_label="MinIO:        "
  ./scripts/minio.sh > "$MINIO_LOG" 2>&1 &
  minio_pid=$!
  for _ in $(seq 1 150); do minio_ready && break; sleep 0.2; done
  minio_ready || { echo "MinIO did not start; see $MINIO_LOG" >&2; exit 1; }
  minio_where="$scheme://$MINIO_ENDPOINT (started here; data in $MINIO_DATA, log in $MINIO_LOG)"
fi

# The production server (gunicorn with tus_server/ops/gunicorn_conf.py; HOST, PORT, WORKERS,
# THREADS from the environment), the same command as a pip-installed `tus-minio serve`.
.venv/bin/tus-minio serve &
app_pid=$!

until app_answers; do
  kill -0 "$app_pid" 2>/dev/null || { wait "$app_pid" || true; echo "the app did not start" >&2; exit 1; }
  sleep 0.2
done
cat <<EOF

tus-minio is running
  page:          http://$url_host:$PORT/
  tus endpoint:  http://$url_host:$PORT/files/
  $storage_label $minio_where
  access:        $access
  stop:          press Ctrl-C (stops the app$([ -n "$minio_pid" ] && echo " and the MinIO started here"))

EOF
wait "$app_pid"
