# shellcheck shell=bash
# Cluster mode (lib/cluster.sh): what it sets up on the machine and takes back. Debian
# packages, sysctls, the bridge and CNI config; on the way down the leftovers of Pods
# (processes, mounts, netns), the iptables chains and the kubelet's cgroups. Sourced by testenv.sh.

CLUSTER_DEBS=(containerd runc containernetworking-plugins iptables conntrack socat buildah mmdebstrap gcc libc6-dev)
# Saved before the first start and written back by cluster_down: ours (bridge-nf-call-iptables)
# and those the kubelet (setupKernelTunables) and kube-proxy set.
CLUSTER_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet
  kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Paths the kubelet creates whatever --root-dir says; removed by cluster_down when it made them.
CLUSTER_HOST_DIRS=(/var/lib/kubelet /usr/libexec/kubernetes)

cluster_packages() {
  local missing=() p
  for p in "${CLUSTER_DEBS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# _cl_sysctls_save: the values from before the first start (kept until cluster_down restores them).
_cl_sysctls_save() {
  local f=$STATE_DIR/sysctl.saved k p
  [[ -f $f ]] && return 0
  for k in "${CLUSTER_SYSCTLS[@]}"; do
    p=/proc/sys/${k//.//}
    if [[ -r $p ]]; then echo "$k=$(cat "$p")"; fi
  done >"$f.tmp"
  mv "$f.tmp" "$f"
  for p in "${CLUSTER_HOST_DIRS[@]}"; do [[ -e $p ]] || echo "$p"; done >"$STATE_DIR/hostdirs.created"
  # containerd 1.6 mounts Pod network namespaces under /run/netns, outside our dirs.
  ls /run/netns 2>/dev/null >"$STATE_DIR/netns.before" || true
}

_cl_sysctls_restore() {
  local f=$STATE_DIR/sysctl.saved k v
  [[ -f $f ]] || return 0
  while IFS='=' read -r k v; do
    echo "$v" >"/proc/sys/${k//.//}" 2>/dev/null || log "could not restore $k=$v"
  done <"$f"
  rm -f "$f"
}

_cl_bridge_up() {
  ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1 || ip link add "$CLUSTER_BRIDGE" type bridge
  ip addr replace "$CLUSTER_ADDR/$(_cl_prefix)" dev "$CLUSTER_BRIDGE"
  ip link set "$CLUSTER_BRIDGE" up
  # Pod -> Service -> Pod on the same bridge must pass kube-proxy's DNAT rules.
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  # The CNI bridge plugin (isGateway) turns IP forwarding on; nothing may be routed between
  # the bridge and any other interface, so Pod traffic ends on this machine.
  iptables -N DBCONN-ISOLATE 2>/dev/null || iptables -F DBCONN-ISOLATE
  iptables -A DBCONN-ISOLATE -i "$CLUSTER_BRIDGE" ! -o "$CLUSTER_BRIDGE" -j DROP
  iptables -A DBCONN-ISOLATE -o "$CLUSTER_BRIDGE" ! -i "$CLUSTER_BRIDGE" -j DROP
  iptables -C FORWARD -j DBCONN-ISOLATE 2>/dev/null || iptables -I FORWARD 1 -j DBCONN-ISOLATE
}

_cl_cni_config() {
  mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/ipam"
  cat >"$STATE_DIR/cni/net.d/10-dbconn.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dbconn",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CLUSTER_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$CLUSTER_POD_CIDR", "gateway": "$CLUSTER_ADDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

# _cl_kill_leftovers: what outlives containerd: the processes left in the kubelet's Pod
# cgroups, then the shims of our socket.
_cl_kill_leftovers() {
  local sock p
  find /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u |
    while read -r p; do kill -9 "$p" 2>/dev/null || true; done
  sock=$(_cl_containerd_sock)
  for p in /proc/[0-9]*; do
    if [[ $(tr '\0' ' ' 2>/dev/null <"$p/cmdline") == *containerd-shim*"-address $sock"* ]]; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

# _cl_unmount: everything mounted under STATE_DIR (kubelet volumes, container rootfs, shm),
# deepest first, and the Pod netns containerd made under /run/netns.
_cl_unmount() {
  local m n
  awk -v d="$STATE_DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
  [[ -f $STATE_DIR/netns.before ]] || return 0
  for n in /run/netns/cni-*; do
    [[ -e $n ]] || continue
    grep -qxF "${n##*/}" "$STATE_DIR/netns.before" 2>/dev/null && continue
    umount "$n" 2>/dev/null || true
    rm -f "$n"
  done
}

# _cl_iptables_clean: the chains kube-proxy, the kubelet, CNI portmap and we made (KUBE-*, CNI-*, DBCONN-*),
# with the jumps to them from the built-in chains, for IPv4 and IPv6.
_cl_iptables_clean() {
  local ipt table rule chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
      { "$ipt" -t "$table" -S | grep -E -- '^-A [A-Z]+ .*-j (KUBE-|CNI-|DBCONN-)' | grep -Ev -- '^-A (KUBE-|CNI-|DBCONN-)' || true; } |
        while read -r rule; do
          # shellcheck disable=SC2086 # the rule is iptables-save syntax, split into its words
          eval "$ipt -t $table -D ${rule#-A }" 2>/dev/null || true
        done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|DBCONN-)/ { print $2 }'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-|DBCONN-)/ { print $2 }'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# _cl_cgroups_clean: the kubepods cgroups the kubelet made (cgroupfs driver, v1 hierarchies).
_cl_cgroups_clean() {
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    if [[ -d $h ]]; then find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
}
