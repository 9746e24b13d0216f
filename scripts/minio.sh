#!/usr/bin/env bash
# Start MinIO on $MINIO_ENDPOINT with data under $MINIO_DATA, in the foreground.
set -euo pipefail
: "${MINIO_ENDPOINT:=127.0.0.1:9000}" "${MINIO_DATA:=$PWD/data/minio}"
: "${MINIO_ACCESS_KEY:=minioadmin}" "${MINIO_SECRET_KEY:=minioadmin}" "${MINIO_BIN:=minio}"
host="${MINIO_ENDPOINT%:*}"; port="${MINIO_ENDPOINT##*:}"
mkdir -p "$MINIO_DATA"
echo "MinIO on http://$MINIO_ENDPOINT (data: $MINIO_DATA)"
MINIO_ROOT_USER="$MINIO_ACCESS_KEY" MINIO_ROOT_PASSWORD="$MINIO_SECRET_KEY" MINIO_BROWSER=off \
  exec "$MINIO_BIN" server --quiet --address "$MINIO_ENDPOINT" \
  --console-address "$host:$((port + 1))" "$MINIO_DATA"
