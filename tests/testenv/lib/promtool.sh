# promtool, for `promtool test rules` on the chart's alerts (tests/gitops.rs). Sourced by
# testenv.sh after etcd.sh, whose build helpers it uses.
#
#   promtool_build   build promtool (tests/testenv/promtool) into $CACHE_DIR/promtool-<version>/
#                    unless it is there; link it into $BIN_DIR

promtool_version() { testenv_mod_version "$TESTENV_DIR/promtool" github.com/prometheus/prometheus; }

promtool_build() {
  local v dir
  v=$(promtool_version)
  dir=$CACHE_DIR/promtool-$v
  if [[ ! -x $dir/promtool ]]; then
    # remove_all_sd drops the cloud service discoveries (AWS, Azure, GCE, ...) that
    # `test rules` never uses: they are most of the build time. The version shows in
    # `promtool --version`.
    testenv_go_build "$dir" "$TESTENV_DIR/promtool" remove_all_sd \
      "-X github.com/prometheus/common/version.Version=$v" \
      promtool=github.com/prometheus/prometheus/cmd/promtool
  fi
  testenv_link "$dir" promtool
}
