#!/usr/bin/env bash
# Try the scale-out deployment on one machine (`make cluster`): four MinIO nodes (one drive
# each, erasure-coded EC:2) behind an nginx, $INSTANCES tus-minio instances (scripts/run.sh,
# each) behind a second nginx. Everything listens on 127.0.0.1 only. Prints where everything
# is; Ctrl-C stops it all. Data and logs go to $CLUSTER_DATA (kept between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${INSTANCES:=2}" "${PORT:=5000}" "${MINIO_PORT:=9000}"
: "${MINIO_NODE_PORT:=9201}" "${INSTANCE_PORT:=5101}" "${CLUSTER_DATA:=$PWD/data/cluster}"
: "${MINIO_ACCESS_KEY:=minioadmin}" "${MINIO_SECRET_KEY:=minioadmin}" "${MINIO_BIN:=minio}"
: "${NGINX:=$(command -v nginx || echo /usr/sbin/nginx)}"
NODES=4
ip=127.0.0.1
run="$CLUSTER_DATA/run"
mkdir -p "$run"

pids=()
stop_all() {
  trap '' INT TERM
  # One at a time, front to back (the app balancer, the instances, the MinIO balancer, the
  # nodes): an instance stops while MinIO still answers, so it lets go of its locks and
  # deletes its heartbeat.
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

answers() { curl -fs -o /dev/null --max-time 2 "$1"; }
wait_for() {  # URL WHAT LOG
  for _ in $(seq 1 300); do answers "$1" && return 0; sleep 0.2; done
  echo "$2 did not come up; see $3" >&2
  exit 1
}

# nginx from a template: the listen address, the run directory, and its `server` line once
# per address.
nginx_start() {  # NAME LISTEN ADDRESS...
  local name="$1" listen="$2"
  shift 2
  awk -v listen="$listen" -v run="$run" -v servers="$*" '
    /@SERVER@/ { n = split(servers, s, " ")
                 for (i = 1; i <= n; i++) { line = $0; sub(/@SERVER@/, s[i], line); print line }
                 next }
    { gsub(/@LISTEN@/, listen); gsub(/@RUN_DIR@/, run); print }
  ' "deploy/nginx-$name.conf" > "$run/nginx-$name.conf"
  local args=(-e "$run/nginx-$name-error.log" -p "$run" -c "$run/nginx-$name.conf")
  "$NGINX" "${args[@]}" -t -q || exit 1
  "$NGINX" "${args[@]}" -g 'daemon off;' &
  pids+=($!)
}

# ---------------------------------------------------------------- MinIO: 4 nodes, EC:2
endpoints=() nodes=()
for n in $(seq 1 $NODES); do
  endpoints+=("http://$ip:$((MINIO_NODE_PORT + n - 1))$CLUSTER_DATA/node$n")
  nodes+=("$ip:$((MINIO_NODE_PORT + n - 1))")
  mkdir -p "$CLUSTER_DATA/node$n"
done
for n in $(seq 1 $NODES); do
  node="${nodes[n-1]}"
  # _MINIO_SERVER_LOCAL and MINIO_CI_CD: only for trying it on one machine (deploy/README.md).
  _MINIO_SERVER_LOCAL="$node" MINIO_CI_CD=1 MINIO_STORAGE_CLASS_STANDARD=EC:2 \
    MINIO_ROOT_USER="$MINIO_ACCESS_KEY" MINIO_ROOT_PASSWORD="$MINIO_SECRET_KEY" \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    "$MINIO_BIN" server --quiet --address "$node" \
    --console-address "$ip:$((MINIO_NODE_PORT + 100 + n - 1))" "${endpoints[@]}" \
    > "$CLUSTER_DATA/minio-node$n.log" 2>&1 &
  pids+=($!)
done
minio_endpoint="$ip:$MINIO_PORT"
nginx_start minio "$minio_endpoint" "${nodes[@]}"
wait_for "http://$minio_endpoint/minio/health/cluster" "the MinIO cluster" \
  "$CLUSTER_DATA/minio-node*.log"

# ---------------------------------------------------------------- the app instances
instances=()
for n in $(seq 1 "$INSTANCES"); do
  port=$((INSTANCE_PORT + n - 1))
  instances+=("$ip:$port")
  HOST=$ip PORT=$port MINIO_ENDPOINT="$minio_endpoint" TUS_BEHIND_PROXY=1 \
    ./scripts/run.sh > "$CLUSTER_DATA/instance$n.log" 2>&1 &
  pids+=($!)
done
nginx_start app "$ip:$PORT" "${instances[@]}"
for n in $(seq 1 "$INSTANCES"); do
  wait_for "http://${instances[n-1]}/healthz" "instance $n" "$CLUSTER_DATA/instance$n.log"
done
wait_for "http://$ip:$PORT/healthz" "the app balancer" "$run/nginx-app-error.log"

cat <<EOF

tus-minio cluster is running (on this machine only)
  page:          http://$ip:$PORT/
  tus endpoint:  http://$ip:$PORT/files/    (nginx, $INSTANCES instances behind it)
  instances:     ${instances[*]}    (logs: $CLUSTER_DATA/instance*.log)
  MinIO:         http://$minio_endpoint    (nginx in front of the nodes)
  MinIO nodes:   ${nodes[*]}    (EC:2; data and logs in $CLUSTER_DATA)
  nginx:         $run/nginx-{app,minio}.conf, logs beside them
  stop:          press Ctrl-C (stops everything started here)

EOF
wait
