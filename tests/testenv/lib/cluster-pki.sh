# shellcheck shell=bash
# Cluster mode (lib/cluster.sh): its certificates and kubeconfigs. Sourced by testenv.sh.

# _cl_pki: once per STATE_DIR, a CA and one certificate per component (ECDSA P-256: a tenth of
# the time RSA keys take). Made in a scratch dir, moved into place when complete.
_cl_pki() {
  local d=$STATE_DIR/pki tmp
  [[ -f $d/sa.pub ]] && return 0
  rm -rf "$d"
  tmp=$(mktemp -d "$STATE_DIR/.pki.XXXXXX")
  (
    set -e
    cd "$tmp"
    cat >openssl.cnf <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dbconn-cluster-ca
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[apiserver]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$CLUSTER_ADDR,IP:$CLUSTER_SERVICE_IP
[kubelet]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:$CLUSTER_NODE,IP:$CLUSTER_ADDR
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    sign() { # NAME SUBJECT SECTION
      key "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr"
    }
    key ca.key
    openssl req -x509 -new -config openssl.cnf -extensions ca -key ca.key -days 3650 -out ca.crt
    sign apiserver "/CN=kube-apiserver" apiserver
    sign kubelet-serving "/CN=$CLUSTER_NODE" kubelet
    sign admin "/O=system:masters/CN=admin" client
    # The apiserver's client identity towards kubelets (logs, exec, port-forward).
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
    sign controller-manager "/CN=system:kube-controller-manager" client
    sign scheduler "/CN=system:kube-scheduler" client
    sign kubelet "/O=system:nodes/CN=system:node:$CLUSTER_NODE" client
    sign kube-proxy "/CN=system:kube-proxy" client
    key sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    chmod 600 ./*.key
  ) || { rm -rf "$tmp"; die "making the cluster certificates failed"; }
  mv "$tmp" "$d"
}

# _cl_kubeconfig NAME CERT SERVER: $STATE_DIR/NAME.kubeconfig for the client cert pki/CERT.
_cl_kubeconfig() {
  local d=$STATE_DIR/pki f=$STATE_DIR/$1
  cat >"$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dbconn-cluster
  cluster:
    server: $3
    certificate-authority-data: $(base64 -w0 <"$d/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$d/$2.crt")
    client-key-data: $(base64 -w0 <"$d/$2.key")
contexts:
- name: dbconn-cluster
  context:
    cluster: dbconn-cluster
    user: $2
    namespace: default
current-context: dbconn-cluster
EOF
  chmod 600 "$f.tmp"
  mv -f "$f.tmp" "$f"
}

_cl_kubeconfigs() {
  local server=https://$CLUSTER_ADDR:$APISERVER_PORT c
  _cl_kubeconfig kubeconfig admin "$server"
  for c in controller-manager scheduler kubelet kube-proxy; do
    _cl_kubeconfig "$c.kubeconfig" "$c" "$server"
  done
}
