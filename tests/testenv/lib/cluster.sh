# shellcheck shell=bash
# Cluster mode of the test environment: a single-node Kubernetes cluster that runs Pods, beside
# (not instead of) the envtest-style control plane that `testenv.sh up` starts. Sourced by
# testenv.sh after common.sh, etcd.sh and k8s.sh; testenv.sh gives it its own STATE_DIR and
# ports, so both can run at once. Its certificates are in cluster-pki.sh; what it sets up on the
# machine and takes back (packages, sysctls, bridge, iptables, mounts) in cluster-host.sh.
#
#   cluster_up        install missing Debian packages, build what is missing, then start etcd,
#                     the bridge, containerd, kube-apiserver, controller-manager, scheduler,
#                     kubelet, kube-proxy and the database forwards; wait for the node to be Ready
#   cluster_down      stop all of it; unmount, remove netns/veths/bridge/iptables chains it made,
#                     restore the sysctls it or the kubelet/kube-proxy changed
#   cluster_status    say what runs
#   cluster_image_import FILE   import an OCI archive into the cluster's containerd (k8s.io)
#
# Traffic stays on the machine: everything listens on 127.0.0.1 or on the bridge's address,
# which this script creates; Pods get a default route to the bridge, and a FORWARD rule drops
# whatever would be routed between the bridge and another interface.

CLUSTER_NODE=${CLUSTER_NODE:-dbconn-node}
CLUSTER_BRIDGE=${CLUSTER_BRIDGE:-dbconn0}
CLUSTER_POD_CIDR=${CLUSTER_POD_CIDR:-10.244.0.0/24}
# The bridge's own address: apiserver, kubelet and the database forwards listen here.
CLUSTER_ADDR=${CLUSTER_ADDR:-10.244.0.1}
CLUSTER_SERVICE_CIDR=${CLUSTER_SERVICE_CIDR:-10.96.0.0/24}
CLUSTER_SERVICE_IP=${CLUSTER_SERVICE_IP:-10.96.0.1}
# The tag kubelet/containerd expect for the sandbox image (build/pause/Makefile of v1.34).
PAUSE_IMAGE=registry.k8s.io/pause:3.10.1
CLUSTER_COMPONENTS=(etcd apiserver containerd controller-manager scheduler kubelet kube-proxy)
# Database ports of the plain environment, forwarded from the bridge address so Pods reach them:
# each service in services/ registers its own.
CLUSTER_FORWARDS=("${TESTENV_FORWARDS[@]}")

_cl_containerd_sock() { echo "$STATE_DIR/containerd/containerd.sock"; }
_cl_ctr() { ctr --address "$(_cl_containerd_sock)" -n k8s.io "$@"; }
_cl_kubectl() { "$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/kubeconfig" "$@"; }
_cl_prefix() { echo "${CLUSTER_POD_CIDR#*/}"; }

_cl_containerd_config() {
  local d=$STATE_DIR/containerd
  mkdir -p "$d"
  # Own root, state, socket and runc root: nothing under /var/lib/containerd or /run/containerd
  # but the shims' sockets (/run/containerd/s, fixed in 1.6).
  # restrict_oom_score_adj: the kubelet asks for -998, which needs CAP_SYS_RESOURCE, not in
  # this machine's bounding set (runc fails "can't get final child's PID from pipe").
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$(_cl_containerd_sock)"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
EOF
}

# buildah_tmp ROOT ARGS...: buildah with a throwaway storage under ROOT (vfs: no overlay
# mounts to leave behind), so image builds touch nothing under /var/lib/containers.
buildah_tmp() {
  local root=$1; shift
  buildah --root "$root/storage" --runroot "$root/run" --storage-driver vfs "$@"
}

# _cl_pause_archive: the sandbox image, built from the pinned Kubernetes module's own
# build/pause/linux/pause.c (no registry is reachable); cached per Kubernetes version.
_cl_pause_archive() {
  local v dir src tmp go c
  v=$(k8s_version)
  dir=$CACHE_DIR/pause-$v
  if [[ ! -f $dir/pause.oci.tar ]]; then
    go=$(testenv_go)
    src=$(cd "$TESTENV_DIR/k8s" && GOWORK=off GOFLAGS=-mod=readonly "$go" mod download -json "k8s.io/kubernetes@$v" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -f $src/build/pause/linux/pause.c ]] || die "pause.c not found in the module cache ($src)"
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.build.XXXXXX")
    gcc -Os -static -DVERSION="v${PAUSE_IMAGE##*:}-dbconn" -o "$tmp/pause" "$src/build/pause/linux/pause.c"
    strip "$tmp/pause"
    c=$(buildah_tmp "$tmp" from scratch)
    buildah_tmp "$tmp" copy "$c" "$tmp/pause" /pause >/dev/null
    buildah_tmp "$tmp" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    buildah_tmp "$tmp" commit -q "$c" "$PAUSE_IMAGE" >/dev/null
    buildah_tmp "$tmp" push -q "$PAUSE_IMAGE" "oci-archive:$tmp/pause.oci.tar:$PAUSE_IMAGE"
    mv "$tmp/pause.oci.tar" "$dir/pause.oci.tar"
    buildah_tmp "$tmp" rm -a >/dev/null 2>&1 || true
    rm -rf "$tmp"
  fi
  echo "$dir/pause.oci.tar"
}

# cluster_image_import FILE: load an OCI archive (made by `buildah push ... oci-archive:F:NAME`)
# into the k8s.io namespace, where the kubelet finds it (imagePullPolicy Never/IfNotPresent).
cluster_image_import() {
  containerd_running || die "the cluster is not running (testenv.sh cluster-up)"
  _cl_ctr images import --no-unpack=false "$1" >/dev/null
}

containerd_running() { pid_alive containerd; }
containerd_start() {
  containerd_running && return 0
  _cl_containerd_config
  testenv_spawn containerd containerd --config "$STATE_DIR/containerd/config.toml"
  testenv_wait_up containerd 30 _cl_ctr version
}

_cl_apiserver_ready() {
  local d=$STATE_DIR/pki
  [[ $(curl -sS --max-time 5 --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://$CLUSTER_ADDR:$APISERVER_PORT/readyz") == ok ]]
}

_cl_apiserver_start() {
  pid_alive apiserver && return 0
  local d=$STATE_DIR/pki
  testenv_spawn apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$CLUSTER_ADDR" \
    --advertise-address="$CLUSTER_ADDR" \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$d" \
    --tls-cert-file="$d/apiserver.crt" \
    --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$d/sa.pub" \
    --service-account-signing-key-file="$d/sa.key" \
    --kubelet-client-certificate="$d/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$d/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --allow-privileged=true \
    --profiling=false \
    --v=0
  testenv_wait_up apiserver 180 _cl_apiserver_ready
}

_cl_controller_manager_start() {
  pid_alive controller-manager && return 0
  local d=$STATE_DIR/pki k=$STATE_DIR/controller-manager.kubeconfig
  testenv_spawn controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
    --bind-address=127.0.0.1 --secure-port=10257 --cert-dir="$STATE_DIR/controller-manager" \
    --service-account-private-key-file="$d/sa.key" --root-ca-file="$d/ca.crt" \
    --cluster-signing-cert-file="$d/ca.crt" --cluster-signing-key-file="$d/ca.key" \
    --use-service-account-credentials --controllers='*' \
    --leader-elect=false --allocate-node-cidrs=false \
    --service-cluster-ip-range="$CLUSTER_SERVICE_CIDR" --cluster-name=dbconn --v=0
}

_cl_scheduler_start() {
  pid_alive scheduler && return 0
  local k=$STATE_DIR/scheduler.kubeconfig
  testenv_spawn scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig="$k" --authentication-kubeconfig="$k" --authorization-kubeconfig="$k" \
    --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --v=0
}

_cl_kubelet_start() {
  pid_alive kubelet && return 0
  local d=$STATE_DIR/pki
  mkdir -p "$STATE_DIR/kubelet" "$STATE_DIR/pod-logs" "$STATE_DIR/kubelet-plugins"
  # No systemd here: cgroupfs, and cgroup v1 must be allowed; low eviction thresholds so a
  # busy shared disk does not evict the operator.
  cat >"$STATE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $CLUSTER_ADDR
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$(_cl_containerd_sock)
readOnlyPort: 0
tlsCertFile: $d/kubelet-serving.crt
tlsPrivateKeyFile: $d/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/ca.crt}
authorization: {mode: Webhook}
podCIDR: $CLUSTER_POD_CIDR
podLogsDir: $STATE_DIR/pod-logs
volumePluginDir: $STATE_DIR/kubelet-plugins
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 30
serializeImagePulls: false
EOF
  testenv_spawn kubelet "$BIN_DIR/kubelet" \
    --config="$STATE_DIR/kubelet.yaml" --kubeconfig="$STATE_DIR/kubelet.kubeconfig" \
    --hostname-override="$CLUSTER_NODE" --node-ip="$CLUSTER_ADDR" \
    --root-dir="$STATE_DIR/kubelet" --v=0
}

_cl_kube_proxy_start() {
  pid_alive kube-proxy && return 0
  # conntrack values 0 and localhostNodePorts false: leave the host's conntrack table and
  # route_localnet alone; NodePorts only on the bridge, never on the outward interface.
  cat >"$STATE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $CLUSTER_NODE
clusterCIDR: $CLUSTER_POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$CLUSTER_POD_CIDR"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
  testenv_spawn kube-proxy "$BIN_DIR/kube-proxy" --config="$STATE_DIR/kube-proxy.yaml" --v=0
}

_cl_forwards_start() {
  local f
  for f in "${CLUSTER_FORWARDS[@]}"; do
    pid_alive "forward-${f%%:*}" && continue
    testenv_spawn "forward-${f%%:*}" socat \
      "TCP-LISTEN:${f#*:},bind=$CLUSTER_ADDR,fork,reuseaddr" "TCP:127.0.0.1:${f#*:}"
  done
}

_cl_node_ready() {
  [[ $(_cl_kubectl get node "$CLUSTER_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

cluster_up() {
  local start=$SECONDS t
  cluster_packages
  etcd_build; k8s_build; k8s_node_build
  [[ -d /proc/sys/net/bridge ]] || die "br_netfilter is not available in this kernel"
  t=$SECONDS
  _cl_sysctls_save
  _cl_bridge_up
  _cl_pki
  _cl_kubeconfigs
  _cl_cni_config
  etcd_start
  _cl_apiserver_start
  containerd_start
  cluster_image_import "$(_cl_pause_archive)"
  _cl_controller_manager_start
  _cl_scheduler_start
  _cl_kubelet_start
  _cl_kube_proxy_start
  _cl_forwards_start
  wait_for "node $CLUSTER_NODE Ready" 120 _cl_node_ready
  log "cluster up in $((SECONDS - start))s ($((SECONDS - t))s after the builds); KUBECONFIG=$STATE_DIR/kubeconfig"
}

# _cl_drain: delete every Pod while the kubelet still runs, so it tears each sandbox down the
# CRI way (CNI DEL: veth and netns gone); the controller-manager is stopped first so nothing
# is recreated.
_cl_drain() {
  pid_alive apiserver && pid_alive kubelet && containerd_running || return 0
  _cl_kubectl delete pods --all-namespaces --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -z $(_cl_ctr tasks ls -q 2>/dev/null) ]] && return 0
    sleep 0.2
  done
  log "containers still running after 60s; killing them"
}

cluster_down() {
  local f p ours=false
  # What is machine-wide (Pod cgroups, netns, links, iptables chains, sysctls) is cleaned only
  # when this state dir's cluster set it up: cluster_up writes the marker, the end of this
  # function removes it. A down for another state dir must not touch a running cluster.
  [[ -f $STATE_DIR/sysctl.saved ]] && ours=true
  for f in "${CLUSTER_FORWARDS[@]}"; do
    p=$STATE_DIR/forward-${f%%:*}.pid
    # socat forks a child per connection, all in its session: end the whole group.
    if [[ -f $p ]]; then kill -- "-$(cat "$p")" 2>/dev/null || true; rm -f "$p"; fi
  done
  stop_pid controller-manager
  stop_pid scheduler
  _cl_drain
  stop_pid kube-proxy
  stop_pid kubelet
  # A node object kept in etcd would read Ready at the next start before its kubelet runs.
  if pid_alive apiserver; then _cl_kubectl delete node "$CLUSTER_NODE" --wait=false >/dev/null 2>&1 || true; fi
  stop_pid containerd
  if $ours; then _cl_kill_leftovers; fi
  _cl_unmount
  # The clients are gone, so no watch holds the apiserver up (it stops in about a second).
  stop_pid apiserver
  stop_pid etcd
  # The cluster is a throwaway: its objects do not outlive it, so every cluster-up starts empty
  # (an object left from an older chart, such as a CRD Helm did not own, would fail the next one).
  rm -rf "$STATE_DIR/etcd-data"
  if ! $ours; then
    log "cluster down (it had set nothing up on the host)"
    return 0
  fi
  for p in $(ip -o link show master "$CLUSTER_BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }'); do
    ip link del "${p%@*}" 2>/dev/null || true
  done
  ip link del "$CLUSTER_BRIDGE" 2>/dev/null || true
  _cl_iptables_clean
  _cl_cgroups_clean
  if [[ -f $STATE_DIR/hostdirs.created ]]; then
    while read -r p; do
      if [[ -n $p ]]; then rm -rf "$p"; fi
    done <"$STATE_DIR/hostdirs.created"
    rm -f "$STATE_DIR/hostdirs.created"
  fi
  rm -f "$STATE_DIR/netns.before"
  _cl_sysctls_restore
  log "cluster down"
}

cluster_status() {
  local c
  for c in "${CLUSTER_COMPONENTS[@]}"; do
    if pid_alive "$c"; then echo "$c: running"; else echo "$c: stopped"; fi
  done
  if pid_alive apiserver; then _cl_kubectl get nodes -o wide; fi
}
