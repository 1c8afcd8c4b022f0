#!/usr/bin/env bash
# bench-pods.sh: measure how fast a peapod node starts and deletes pods and
# what its pods cost it in memory, with podman (`podman kube play` of the same
# pod) as the peer, and print both side by side.
#
# It makes the busybox:1.36 image archive (hack/busybox-image.sh), starts
#   bin/peapod server --data-dir D --bind-address 127.0.0.1 --node-ip 127.0.0.1 ...
# (control plane and node agent in one process) in a temporary directory on
# free loopback ports, with the image loaded and a registries.yaml that sends
# every pull to 127.0.0.1:1 (nothing is pulled from outside), then runs
#   bin/peapod bench pods --kubeconfig D/admin.kubeconfig --agent-pid PID \
#       --data-dir D --podman podman --image ARCHIVE "$@"
# which measures peapod, then podman in a directory and namespaces of its own,
# and prints one table. On exit it stops the server by PID, runs
# `bin/peapod reset --data-dir D` (containers, network, mounts, cgroups, data
# dir) and removes the temporary directory.
#
# Arguments go to `peapod bench pods` (e.g. --count 50 --parallel 30 --out F).
# Environment: PEAPOD (default bin/peapod); PODMAN (default podman; empty
# measures peapod alone); SPLIT=1 runs the node agent as a process of its own
# (`peapod server --disable-agent` + `peapod agent`), so that the agent's
# memory is its own rather than the whole server's; KEEP_TMP=1 keeps the
# temporary directory (after the reset).
set -euo pipefail

cd "$(dirname "$0")/.."
PEAPOD=${PEAPOD:-bin/peapod}
PODMAN=${PODMAN-podman}
SPLIT=${SPLIT:-}

log() { echo "bench-pods: $*" >&2; }

[[ $(id -u) == 0 ]] || { log "must run as root (the node agent runs containers)"; exit 1; }
[[ -x $PEAPOD ]] || { log "$PEAPOD not found: make build"; exit 1; }
for tool in ss nsenter unshare; do
  command -v "$tool" >/dev/null || { log "$tool is needed"; exit 1; }
done
if [[ -n $PODMAN ]] && ! command -v "$PODMAN" >/dev/null; then
  log "$PODMAN not found: apt-get install -y podman (or PODMAN= to measure peapod alone)"
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-pods.XXXXXX")
data=$tmp/server
agent_data=$tmp/agent
server_pid=
agent_pid=
own_cidrs=()

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
  local rc=$?
  stop_pid "$agent_pid" "peapod agent"
  stop_pid "$server_pid" "peapod server"
  if [[ -d $agent_data ]]; then
    "$PEAPOD" reset --data-dir "$agent_data" || rc=1
  fi
  if [[ -d $data ]]; then
    "$PEAPOD" reset --data-dir "$data" || rc=1
  fi
  # peapod reset keeps the cluster and service ranges' unreachable routes
  # while any other peapod bridge is on the machine, whatever its ranges:
  # these ranges were this run's alone.
  local cidr
  for cidr in "${own_cidrs[@]}"; do
    if [[ -n $(ip route show type unreachable "$cidr" 2>/dev/null) ]]; then
      ip route del unreachable "$cidr" && log "removed the unreachable route to $cidr that peapod reset kept"
    fi
  done
  if [[ ${KEEP_TMP:-} == 1 ]]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { # a loopback TCP port nothing listens on
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    [[ -z $(ss -Htln "sport = :$p") ]] && { echo "$p"; return; }
  done
}

log "making the busybox:1.36 image archive"
./hack/busybox-image.sh "$tmp/busybox.tar" >/dev/null

node_dir=$data
[[ $SPLIT == 1 ]] && node_dir=$agent_data
mkdir -p "$data" "$node_dir"
registries=$tmp/registries.yaml
cat >"$registries" <<'REG'
mirrors:
  "*":
    endpoint: ["http://127.0.0.1:1"]
disable-default-registry-endpoint: true
REG
"$PEAPOD" image load --data-dir "$node_dir" "$tmp/busybox.tar" >/dev/null

api_port=$(free_port)
kubelet_port=$(free_port)
while [[ $kubelet_port == "$api_port" ]]; do kubelet_port=$(free_port); done
node=bench-pods-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
cidrs=()
if [[ $SPLIT != 1 ]]; then
  # Ranges of their own, so as not to meet other peapod nodes on this machine
  # (a separate `peapod agent` has no flags for them: it assumes the defaults).
  own_cidrs=(10.213.0.0/16 10.214.0.0/16)
  cidrs=(--cluster-cidr "${own_cidrs[0]}" --service-cidr "${own_cidrs[1]}")
fi
node_flags=(--kubelet-port "$kubelet_port" --node-ip 127.0.0.1 --node-name "$node" --registries "$registries")

if [[ $SPLIT == 1 ]]; then
  log "starting $PEAPOD server --disable-agent on 127.0.0.1:$api_port"
  "$PEAPOD" server --disable-agent --data-dir "$data" --bind-address 127.0.0.1 \
    --https-listen-port "$api_port" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for i in $(seq 600); do
    [[ -s $data/token && -s $data/admin.kubeconfig ]] && break
    kill -0 "$server_pid" 2>/dev/null || { tail -30 "$tmp/server.log" >&2; log "server exited"; exit 1; }
    [[ $i == 600 ]] && { tail -30 "$tmp/server.log" >&2; log "server not up after 60s"; exit 1; }
    sleep 0.1
  done
  log "starting $PEAPOD agent, node $node"
  "$PEAPOD" agent --server "https://127.0.0.1:$api_port" --token "$(cat "$data/token")" \
    --data-dir "$agent_data" "${node_flags[@]}" >"$tmp/agent.log" 2>&1 &
  agent_pid=$!
  agent_label="peapod agent (pid $agent_pid; the control plane runs apart)"
else
  log "starting $PEAPOD server on 127.0.0.1:$api_port, node $node"
  "$PEAPOD" server --data-dir "$data" --bind-address 127.0.0.1 --https-listen-port "$api_port" \
    "${cidrs[@]}" "${node_flags[@]}" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  agent_label="peapod server (pid $server_pid): control plane, store and agent in one process"
fi

for i in $(seq 600); do
  [[ -s $data/admin.kubeconfig ]] && break
  kill -0 "$server_pid" 2>/dev/null || { tail -30 "$tmp/server.log" >&2; log "server exited"; exit 1; }
  [[ $i == 600 ]] && { tail -30 "$tmp/server.log" >&2; log "no admin kubeconfig after 60s"; exit 1; }
  sleep 0.1
done

podman_flags=()
[[ -n $PODMAN ]] && podman_flags=(--podman "$PODMAN" --image "$tmp/busybox.tar")
status=0
"$PEAPOD" bench pods --kubeconfig "$data/admin.kubeconfig" --node "$node" \
  --agent-pid "${agent_pid:-$server_pid}" --agent-label "$agent_label" --data-dir "$node_dir" \
  "${podman_flags[@]}" "$@" || status=$?
if [[ $status != 0 ]]; then
  log "bench pods failed (exit $status); the server's log ends:"
  tail -40 "$tmp/server.log" >&2
  [[ -f $tmp/agent.log ]] && { log "the agent's log ends:"; tail -40 "$tmp/agent.log" >&2; }
  exit "$status"
fi
