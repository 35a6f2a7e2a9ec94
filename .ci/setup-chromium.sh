# Sourced by .ci/run: installs Debian's chromium for the request
# waterfall's browser test (app TestWaterfallInBrowser) and
# exports SLUICE_CHROMIUM. Idempotent: quick when chromium is there.
if [ -z "${SLUICE_CHROMIUM:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  fi
  SLUICE_CHROMIUM="$(command -v chromium)"
  export SLUICE_CHROMIUM
fi
echo "chromium: $SLUICE_CHROMIUM"
