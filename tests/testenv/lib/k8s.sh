# kube-apiserver (plus kubectl and helm) for the test environment. Sourced by testenv.sh after
# common.sh and etcd.sh (whose helpers it uses). The apiserver is started the way
# controller-runtime's envtest starts it: no controller-manager, no scheduler, no kubelet.
#
#   k8s_build          build kube-apiserver + kubectl (tests/testenv/k8s) and helm (tests/testenv/helm)
#                      into versioned dirs under $CACHE_DIR unless there; link them into $BIN_DIR
#   k8s_node_build     the same for kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#   apiserver_start    start kube-apiserver against etcd (no-op when running), wait for /readyz,
#                      write $STATE_DIR/kubeconfig (admin, group system:masters)
#   apiserver_stop     stop it (etcd and its data stay)
#   apiserver_kill     SIGKILL it, as a crash would
#   apiserver_running  true when the kube-apiserver process is alive
#   k8s_env            print KUBECONFIG=...

# shellcheck source-path=SCRIPTDIR source=etcd.sh
declare -F testenv_go_build >/dev/null || source "$(dirname "${BASH_SOURCE[0]}")/etcd.sh"

# Commit of the pinned k8s.io/kubernetes tag (from the module proxy's Origin data); only
# reported by `kubectl version` / `/version`. The version itself is read from k8s/go.mod.
K8S_GIT_COMMIT=${K8S_GIT_COMMIT:-26c89157669bdc7e3657302bc1abde758507095b}
# Upstream release builds use these tags (hack/lib/golang.sh).
K8S_BUILD_TAGS=selinux,notest,grpcnotrace

k8s_version() { testenv_mod_version "$TESTENV_DIR/k8s" k8s.io/kubernetes; }
helm_version() { testenv_mod_version "$TESTENV_DIR/helm" helm.sh/helm/v3; }

# _k8s_ldflags VERSION: what upstream's release build stamps into each binary (hack/lib/version.sh).
_k8s_ldflags() {
  local v=$1 major minor ldflags="" p k
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for k in "gitVersion=$v" "gitMajor=$major" "gitMinor=$minor" \
      "gitCommit=$K8S_GIT_COMMIT" "gitTreeState=clean"; do
      ldflags+=" -X $p.$k"
    done
  done
  echo "$ldflags"
}

k8s_build() {
  local v dir
  v=$(k8s_version)
  dir=$CACHE_DIR/k8s-$v
  if [[ ! -x $dir/kube-apiserver || ! -x $dir/kubectl ]]; then
    testenv_go_build "$dir" "$TESTENV_DIR/k8s" "$K8S_BUILD_TAGS" "$(_k8s_ldflags "$v")" \
      kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
      kubectl=k8s.io/kubernetes/cmd/kubectl
  fi
  testenv_link "$dir" kube-apiserver kubectl
  helm_build
}

# k8s_node_build: the components only cluster mode runs (lib/cluster.sh), into the same
# versioned dir as the apiserver; `up` never builds them.
K8S_NODE_TOOLS=(kube-controller-manager kube-scheduler kubelet kube-proxy)
k8s_node_build() {
  local v dir t specs=()
  v=$(k8s_version)
  dir=$CACHE_DIR/k8s-$v
  for t in "${K8S_NODE_TOOLS[@]}"; do
    [[ -x $dir/$t ]] || specs+=("$t=k8s.io/kubernetes/cmd/$t")
  done
  if ((${#specs[@]})); then
    testenv_go_build "$dir" "$TESTENV_DIR/k8s" "$K8S_BUILD_TAGS" "$(_k8s_ldflags "$v")" "${specs[@]}"
  fi
  testenv_link "$dir" "${K8S_NODE_TOOLS[@]}"
}

helm_build() {
  local v dir cg cgmajor cgminor p
  v=$(helm_version)
  dir=$CACHE_DIR/helm-$v
  if [[ ! -x $dir/helm ]]; then
    # As helm's Makefile does: the Kubernetes version helm assumes by default (for
    # .Capabilities and lint) follows its client-go, v0.N.x -> 1.N.
    cg=$(testenv_mod_version "$TESTENV_DIR/helm" k8s.io/client-go)
    cgmajor=${cg#v}; cgmajor=$((${cgmajor%%.*} + 1))
    cgminor=${cg#v*.}; cgminor=${cgminor%%.*}
    local ldflags="-X helm.sh/helm/v3/internal/version.version=$v"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $p.k8sVersionMajor=$cgmajor -X $p.k8sVersionMinor=$cgminor"
    done
    testenv_go_build "$dir" "$TESTENV_DIR/helm" "" "$ldflags" helm=helm.sh/helm/v3/cmd/helm
  fi
  testenv_link "$dir" helm
}

# _k8s_pki: once per STATE_DIR, a CA, the apiserver's serving cert (localhost, 127.0.0.1 and
# the in-cluster names), the admin client cert (CN=admin, O=system:masters) and the
# service-account key pair. Generated in a scratch dir and moved into place when complete.
_k8s_pki() {
  local d=$STATE_DIR/pki tmp
  [[ -f $d/sa.pub ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed to make the test certificates"
  rm -rf "$d"
  tmp=$(mktemp -d "$STATE_DIR/.pki.XXXXXX")
  (
    set -e
    cd "$tmp"
    cat >openssl.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dbconn-testenv-ca
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
    sign() { # NAME SUBJECT SECTION
      key "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr"
    }
    key ca.key
    openssl req -x509 -new -config openssl.cnf -extensions ca -key ca.key -days 3650 -out ca.crt
    sign apiserver "/CN=kube-apiserver" server
    sign admin "/O=system:masters/CN=admin" client
    key sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    chmod 600 ./*.key
  ) || { rm -rf "$tmp"; die "making the test certificates failed"; }
  mv "$tmp" "$d"
}

_k8s_b64() { base64 -w0 <"$1"; }

_k8s_write_kubeconfig() {
  local d=$STATE_DIR/pki f=$STATE_DIR/kubeconfig
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dbconn-testenv
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(_k8s_b64 "$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(_k8s_b64 "$d/admin.crt")
    client-key-data: $(_k8s_b64 "$d/admin.key")
contexts:
- name: dbconn-testenv
  context:
    cluster: dbconn-testenv
    user: admin
    namespace: default
current-context: dbconn-testenv
EOF
  chmod 600 "$f.tmp"
  mv -f "$f.tmp" "$f"
}

_k8s_ready() {
  local d=$STATE_DIR/pki
  [[ $(curl -sS --max-time 5 --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz") == ok ]]
}

apiserver_running() { pid_alive apiserver; }

apiserver_start() {
  if apiserver_running; then
    log "apiserver already running (pid $(cat "$STATE_DIR/apiserver.pid"))"
    _k8s_pki
    _k8s_write_kubeconfig
    return 0
  fi
  etcd_running || die "etcd is not running; start it first (testenv.sh start etcd)"
  [[ -x $BIN_DIR/kube-apiserver ]] || k8s_build
  _k8s_pki
  _k8s_write_kubeconfig
  local d=$STATE_DIR/pki
  testenv_spawn apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$d" \
    --tls-cert-file="$d/apiserver.crt" \
    --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
    --service-account-key-file="$d/sa.pub" \
    --service-account-signing-key-file="$d/sa.key" \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --profiling=false \
    --v=0
  testenv_wait_up apiserver 180 _k8s_ready
}

apiserver_stop() { stop_pid apiserver; }
apiserver_kill() { kill_pid apiserver; }

k8s_env() { echo "KUBECONFIG=$STATE_DIR/kubeconfig"; }
