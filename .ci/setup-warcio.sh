# Sourced by .ci/run: installs Python's warcio (PyPI), the independent
# WARC reader the WARC tests check archives with (stages/sink
# TestWARCReadByWarcio, docs/warc.md), and exports SLUICE_WARCIO, the
# path of its `warcio` command. Idempotent: quick when warcio is there.
# Without it those tests skip and say why.
if [ -z "${SLUICE_WARCIO:-}" ]; then
  if ! command -v warcio >/dev/null 2>&1; then
    echo "installing warcio (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check 'warcio>=1.7,<2'
    hash -r
  fi
  if command -v warcio >/dev/null 2>&1; then
    SLUICE_WARCIO="$(command -v warcio)"
    export SLUICE_WARCIO
  fi
fi
echo "warcio: ${SLUICE_WARCIO:-not installed; the WARC read-back tests will skip}"
