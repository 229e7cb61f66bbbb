# The GitOps judges tests/gitops.rs runs (tests/gitops/judges, a Go module of its own): kstatus,
# Argo CD's gopher-lua runtime and Flux's CEL health checks. Sourced by testenv.sh after etcd.sh,
# whose testenv_go_build it uses.
#
#   judges_build   build into $CACHE_DIR/gitops-judges-<digest>/ unless it is there; print the
#                  binary's path. The digest covers go.mod, go.sum and the sources, so every
#                  checkout (several worktrees may share one cache) gets the build of its own code.

JUDGES_MODULE=$(cd "$TESTENV_DIR/../gitops/judges" && pwd)

judges_digest() {
  (cd "$JUDGES_MODULE" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
}

judges_build() {
  local dir lock
  dir=$CACHE_DIR/gitops-judges-$(judges_digest)
  if [[ ! -x $dir/gitops-judges ]]; then
    # Test binaries may ask at once: one builds, the others wait for it and reuse its build.
    exec {lock}>"$CACHE_DIR/gitops-judges.lock"
    flock "$lock"
    if [[ ! -x $dir/gitops-judges ]]; then
      testenv_go_build "$dir" "$JUDGES_MODULE" "" "" gitops-judges=.
    fi
    exec {lock}>&-
  fi
  echo "$dir/gitops-judges"
}
