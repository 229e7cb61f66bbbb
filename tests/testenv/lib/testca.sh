# shellcheck shell=bash
# The test CA of the services that serve TLS (services/*.sh), made once with openssl under
# $STATE_DIR/testca/ and kept across stop/start, so a test's trust in it stays valid. Sourced by
# testenv.sh; tests trust ca.crt (TESTENV_CA in `testenv.sh env`).
#
#   testca_ensure   create ca.crt/ca.key and server.crt/server.key (127.0.0.1, localhost)
#                   unless they are there; print nothing
#
# Client certificates for the servers that verify them (services/postgres_mtls.sh, the X509 user
# of services/mariadb.sh), signed by the same CA; with --rogue by a CA of its own that no server
# trusts ($STATE_DIR/testca-rogue, made once, kept like the test CA).
#
#   testenv.sh client-cert CN OUTDIR [--rogue]   write OUTDIR/tls.crt, OUTDIR/tls.key (PKCS#8, P-256):
#                                                CN=<CN>, clientAuth, 30 days; new key and serial per call

TESTCA_DIR=$STATE_DIR/testca
TESTCA_ROGUE_DIR=$STATE_DIR/testca-rogue

testca_ensure() {
  local d=$TESTCA_DIR tmp
  [[ -s $d/ca.crt && -s $d/ca.key && -s $d/server.crt && -s $d/server.key ]] && return 0
  mkdir -p "$d"
  # Built in a scratch dir and moved in whole: an interrupted run leaves no half CA behind.
  tmp=$(mktemp -d "$d/.new.XXXXXX")
  (
    set -e
    cd "$tmp"
    umask 077
    # CA: v3 with CA:TRUE and keyCertSign, as rustls/webpki insist.
    cat >ca.ext <<'EOF'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    cat >server.ext <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -new -key ca.key -subj "/CN=dbconn testenv CA" -out ca.csr
    openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile ca.ext -out ca.crt
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile server.ext -out server.crt
    chmod 644 ca.crt server.crt
  ) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; die "testca: openssl failed"; }
  mv -f "$tmp"/{ca.crt,ca.key,server.crt,server.key} "$d/"
  rm -rf "$tmp"
  log "testca: created $d/ca.crt"
}

# testca_rogue_ensure: a second CA (ca.crt, ca.key) in $TESTCA_ROGUE_DIR unless it is there. Made
# in a scratch dir and renamed into place whole: parallel tests may race to make it, the loser's
# copy goes, and ca.crt and ca.key always belong together.
testca_rogue_ensure() {
  local d=$TESTCA_ROGUE_DIR tmp
  [[ -s $d/ca.crt && -s $d/ca.key ]] && return 0
  tmp=$(mktemp -d "$STATE_DIR/.testca-rogue.XXXXXX")
  (
    set -e
    cd "$tmp"
    umask 077
    printf '%s\n' 'basicConstraints = critical, CA:TRUE' 'keyUsage = critical, keyCertSign, cRLSign' \
      'subjectKeyIdentifier = hash' >ca.ext
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
    openssl req -new -key ca.key -subj "/CN=dbconn testenv rogue CA" -out ca.csr
    openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile ca.ext -out ca.crt
    chmod 644 ca.crt
    rm -f ca.csr ca.ext
  ) >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "testca: openssl failed (rogue CA)"; }
  rm -f "$tmp.log"
  chmod 755 "$tmp"
  mv -T "$tmp" "$d" 2>/dev/null || rm -rf "$tmp"
  [[ -s $d/ca.crt && -s $d/ca.key ]] || die "testca: $d is not a CA (remove it)"
}

# testca_client_cert CN OUTDIR [--rogue]: a client certificate for CN signed by the test CA (the
# rogue CA with --rogue), with a new key and serial on every call. OUTDIR/tls.key (0600) and
# OUTDIR/tls.crt (0644) are each replaced whole (rename): a reader never sees half a file.
testca_client_cert() {
  local cn=${1:-} out=${2:-} ca=$TESTCA_DIR tmp
  [[ -n $cn && -n $out && $# -le 3 && ( -z ${3:-} || $3 == --rogue ) ]] \
    || die "usage: testenv.sh client-cert CN OUTDIR [--rogue]"
  # The CN goes into -subj, where / + = \ and , mean something: keep to a role name's characters.
  [[ $cn =~ ^[A-Za-z0-9_.@-]{1,64}$ ]] || die "client-cert: CN '$cn' must be 1-64 of A-Z a-z 0-9 _ . @ -"
  if [[ ${3:-} == --rogue ]]; then testca_rogue_ensure; ca=$TESTCA_ROGUE_DIR; else testca_ensure; fi
  mkdir -p "$out"
  tmp=$(mktemp -d "$out/.client-cert.XXXXXX")
  (
    set -e
    cd "$tmp"
    umask 077
    printf '%s\n' 'basicConstraints = critical, CA:FALSE' 'keyUsage = critical, digitalSignature' \
      'extendedKeyUsage = clientAuth' 'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid' >client.ext
    # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY").
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out tls.key
    openssl req -new -key tls.key -subj "/CN=$cn" -out client.csr
    openssl x509 -req -in client.csr -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -days 30 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" -extfile client.ext -out tls.crt
    chmod 644 tls.crt
  ) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; die "client-cert: openssl failed"; }
  mv -f "$tmp/tls.key" "$out/tls.key"
  mv -f "$tmp/tls.crt" "$out/tls.crt"
  rm -rf "$tmp"
}

testenv_cmd_client_cert() { testca_client_cert "$@"; }
