#!/usr/bin/env bash
# `make image`: the operator's OCI image, built on this machine without any container registry.
# A Debian runtime root filesystem (libc6, libgcc-s1: what the binary links against, plus the
# CA bundle) made with mmdebstrap, the release binary, and USER / ENTRYPOINT / EXPOSE read from
# the Dockerfile's final stage, so the two builds cannot disagree on them. Built with buildah
# (a plain copy, no RUN step: nothing runs a container or touches the network setup), written
# as an OCI archive and, when the cluster (testenv.sh cluster-up) runs, imported into it.
#
# Prints DBCONN_IMAGE=<reference> and DBCONN_IMAGE_ARCHIVE=<file> on stdout; logs go to stderr.
# The tag is derived from the inputs, so a rebuilt operator gets a new tag (helm upgrade rolls).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dbconn-operator/target}
cache=${DBCONN_TESTENV_CACHE:-$HOME/.cache/dbconn-testenv}/images
repository=${IMAGE_REPOSITORY:-ghcr.io/dbconn/dbconn-operator}
suite=bookworm
packages=libc6,libgcc-s1
log() { printf '[image] %s\n' "$*" >&2; }

started=$SECONDS
for p in buildah mmdebstrap; do
  command -v "$p" >/dev/null || {
    log "installing $p (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  }
done
mkdir -p "$cache"

nice -n 10 cargo build --release --locked --bin dbconn-operator >&2
bin=$CARGO_TARGET_DIR/release/dbconn-operator
# Keyed by what it is built from: the binary, this recipe and the Dockerfile it reads.
tag=dev-$(cat "$bin" "${BASH_SOURCE[0]}" Dockerfile | sha256sum | cut -c1-12)
image=$repository:$tag
archive=$cache/dbconn-operator-$tag.oci.tar

# What the Dockerfile's final stage says (exec form of ENTRYPOINT, as the Dockerfile writes it).
final=$(awk '/^FROM /{ buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' Dockerfile)
user=$(awk '$1 == "USER" { u = $2 } END { print u }' <<<"$final")
entrypoint=$(sed -n 's/^ENTRYPOINT //p' <<<"$final" | tail -n1)
mapfile -t ports < <(awk '$1 == "EXPOSE" { for (i = 2; i <= NF; i++) print $i }' <<<"$final")
[[ -n $user && $entrypoint == \[* ]] || { log "Dockerfile has no USER or exec-form ENTRYPOINT"; exit 1; }

if [[ ! -f $archive ]]; then
  work=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs rm -a >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  b() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }

  # The runtime root filesystem, cached per day (security updates reach it daily at most).
  rootfs=$cache/runtime-$suite-$(date -u +%Y%m%d).tar
  if [[ ! -f $rootfs ]]; then
    t=$SECONDS
    # The host's own apt sources when it has them (the same archive and security suite apt-get
    # uses); otherwise mmdebstrap's default Debian mirror.
    sources=()
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then sources=(/etc/apt/sources.list.d/debian.sources); fi
    mmdebstrap --quiet --variant=extract --include="$packages" "$suite" "$work/rootfs.tar" "${sources[@]}"
    mkdir "$work/root"
    tar -C "$work/root" -xf "$work/rootfs.tar"
    # No package manager, docs or device nodes in the image (the runtime provides /dev).
    rm -rf "$work/root"/{dev,etc/apt,var/cache,var/lib/apt,var/log} \
      "$work/root"/usr/share/{doc,man,info,locale,lintian}
    mkdir -p "$work/root"/{tmp,etc/ssl/certs}
    chmod 1777 "$work/root/tmp"
    cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/"
    # The users distroless knows, so the uid has a name (and $HOME) like on the Dockerfile's base.
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
      >"$work/root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$work/root/etc/group"
    mkdir -p "$work/root/home/nonroot" && chown 65532:65532 "$work/root/home/nonroot"
    tar -C "$work/root" --numeric-owner -cf "$rootfs.tmp" .
    mv "$rootfs.tmp" "$rootfs"
    find "$cache" -maxdepth 1 -name "runtime-$suite-*.tar" ! -name "${rootfs##*/}" -delete
    log "runtime root filesystem ($packages) in $((SECONDS - t))s"
  fi

  t=$SECONDS
  c=$(b from scratch)
  b add "$c" "$rootfs" / >/dev/null
  b copy --chmod 0755 "$c" "$bin" /usr/local/bin/dbconn-operator >/dev/null
  args=(--user "$user" --entrypoint "$entrypoint" --cmd '' --workingdir /
    --label "org.opencontainers.image.source=dbconn-operator"
    --label "org.opencontainers.image.version=$tag")
  for p in "${ports[@]}"; do [[ $p == */* ]] || p+=/tcp; args+=(--port "$p"); done
  b config "${args[@]}" "$c"
  b commit -q "$c" "$image" >/dev/null
  b push -q "$image" "oci-archive:$archive.tmp:$image"
  mv "$archive.tmp" "$archive"
  log "built $image in $((SECONDS - t))s: $(du -h "$archive" | cut -f1) ($archive)"
fi

status=$(bash tests/testenv/testenv.sh cluster-status 2>/dev/null || true)
if [[ $status == *"containerd: running"* ]]; then
  bash tests/testenv/testenv.sh cluster-import "$archive"
  log "imported into the cluster's containerd"
fi
log "done in $((SECONDS - started))s"
echo "DBCONN_IMAGE=$image"
echo "DBCONN_IMAGE_ARCHIVE=$archive"
