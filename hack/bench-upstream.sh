#!/usr/bin/env bash
# bench-upstream.sh: run `peapod bench api` against a stock upstream
# kube-apiserver over Debian's etcd, for comparison with peapod's server.
#
# It builds bin/kube-apiserver from the module cache (k8s.io/kubernetes is in
# go.mod), starts /usr/bin/etcd and kube-apiserver on 127.0.0.1 only, in a
# temporary directory, with certificates made by openssl, runs
#   bin/peapod bench api --kubeconfig K --server-pid APISERVER --store-pid ETCD "$@"
# and stops both (SIGTERM by PID) and removes the directory on exit.
#
# Arguments are passed to `peapod bench api` (e.g. --out upstream.json).
# Environment: PEAPOD (default bin/peapod), KUBE_APISERVER (default
# bin/kube-apiserver, built when missing or when REBUILD=1), ETCD (default
# /usr/bin/etcd), KEEP_TMP=1 keeps the temporary directory.
set -euo pipefail

cd "$(dirname "$0")/.."
PEAPOD=${PEAPOD:-bin/peapod}
KUBE_APISERVER=${KUBE_APISERVER:-bin/kube-apiserver}
ETCD=${ETCD:-/usr/bin/etcd}

log() { echo "bench-upstream: $*" >&2; }

for tool in openssl curl ss; do
  command -v "$tool" >/dev/null || { log "$tool is needed"; exit 1; }
done
[[ -x $ETCD ]] || { log "$ETCD not found: apt-get install -y etcd-server"; exit 1; }
[[ -x $PEAPOD ]] || { log "$PEAPOD not found: go build -o bin/peapod ./cmd/peapod"; exit 1; }
if [[ ! -x $KUBE_APISERVER || ${REBUILD:-} == 1 ]]; then
  log "building $KUBE_APISERVER from k8s.io/kubernetes in the module cache"
  mkdir -p "$(dirname "$KUBE_APISERVER")"
  kver=$(go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' k8s.io/kubernetes)
  go build -ldflags "-X k8s.io/component-base/version.gitVersion=$kver" \
    -o "$KUBE_APISERVER" k8s.io/kubernetes/cmd/kube-apiserver
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-upstream.XXXXXX")
etcd_pid=
apiserver_pid=

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
  local rc=$?
  stop_pid "$apiserver_pid" kube-apiserver
  stop_pid "$etcd_pid" etcd
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

# Certificates: a CA, the API server's serving certificate, an admin client
# certificate in system:masters, and the service account signing key.
pki=$tmp/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
    -subj "/CN=bench-upstream-ca" 2>/dev/null
  cat >serving.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.43.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
  openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile serving.ext -out serving.crt 2>/dev/null
  cat >client.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=bench-admin" 2>/dev/null
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

etcd_client_port=$(free_port)
etcd_peer_port=$(free_port)
while [[ $etcd_peer_port == "$etcd_client_port" ]]; do etcd_peer_port=$(free_port); done
log "starting etcd ($("$ETCD" --version | head -1)) on 127.0.0.1:$etcd_client_port"
"$ETCD" --name bench --data-dir "$tmp/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_client_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$etcd_peer_port" \
  >"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
for i in $(seq 100); do
  curl -fsS "http://127.0.0.1:$etcd_client_port/health" 2>/dev/null | grep -q '"health":"true"' && break
  kill -0 "$etcd_pid" 2>/dev/null || { tail -20 "$tmp/etcd.log" >&2; log "etcd exited"; exit 1; }
  [[ $i == 100 ]] && { tail -20 "$tmp/etcd.log" >&2; log "etcd not healthy after 20s"; exit 1; }
  sleep 0.2
done

api_port=$(free_port)
while [[ $api_port == "$etcd_client_port" || $api_port == "$etcd_peer_port" ]]; do api_port=$(free_port); done
log "starting kube-apiserver ($("$KUBE_APISERVER" --version)) on 127.0.0.1:$api_port"
"$KUBE_APISERVER" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --etcd-servers="http://127.0.0.1:$etcd_client_port" \
  --cert-dir="$tmp/apiserver-certs" \
  --tls-cert-file="$pki/serving.crt" --tls-private-key-file="$pki/serving.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.43.0.0/16 \
  --authorization-mode=AlwaysAllow \
  --profiling=false \
  >"$tmp/kube-apiserver.log" 2>&1 &
apiserver_pid=$!

kubeconfig=$tmp/admin.kubeconfig
cat >"$kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: upstream
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: upstream
  context: {cluster: upstream, user: admin}
current-context: upstream
KC

for i in $(seq 300); do
  [[ $(curl -sS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port/readyz" 2>/dev/null) == ok ]] && break
  kill -0 "$apiserver_pid" 2>/dev/null || { tail -30 "$tmp/kube-apiserver.log" >&2; log "kube-apiserver exited"; exit 1; }
  [[ $i == 300 ]] && { tail -30 "$tmp/kube-apiserver.log" >&2; log "kube-apiserver not ready after 60s"; exit 1; }
  sleep 0.2
done
log "kube-apiserver ready (pid $apiserver_pid, etcd pid $etcd_pid)"

"$PEAPOD" bench api --kubeconfig "$kubeconfig" \
  --server-pid "$apiserver_pid" --store-pid "$etcd_pid" --label upstream "$@"
