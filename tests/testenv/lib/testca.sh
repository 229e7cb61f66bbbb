# shellcheck shell=bash
# The test CA of the services that serve TLS (services/*.sh), made once with openssl under
# $STATE_DIR/testca/ and kept across stop/start, so a test's trust in it stays valid. Sourced by
# testenv.sh; tests trust ca.crt (TESTENV_CA in `testenv.sh env`).
#
#   testca_ensure   create ca.crt/ca.key and server.crt/server.key (127.0.0.1, localhost)
#                   unless they are there; print nothing

TESTCA_DIR=$STATE_DIR/testca

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
