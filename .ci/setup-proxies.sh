# shellcheck shell=bash
# Sourced by .ci/run. Installs real proxy servers from Debian and starts
# them on fixed loopback ports, each making its outgoing connections from
# its own 127.0.0.x source address so a test site can tell them apart:
#
#   microsocks, SOCKS5 without auth    127.0.0.1:11080 → from 127.0.0.201
#   microsocks, SOCKS5 user/pass       127.0.0.1:11081 → from 127.0.0.202
#   tinyproxy,  HTTP with BasicAuth    127.0.0.1:11888 → from 127.0.0.203
#
# Exports SLUICE_TEST_SOCKS5, SLUICE_TEST_SOCKS5_AUTH, SLUICE_TEST_TINYPROXY
# (proxy URLs, credentials included) and SLUICE_TEST_*_SRC (the source
# addresses). Idempotent: servers already listening are left alone.
# Outside CI, run it with `source .ci/setup-proxies.sh`.

sluice_proxy_user=sluice
sluice_proxy_pass=ci-proxy-canary-3f9a1c

sluice_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

sluice_wait_port() {
  local i
  for i in $(seq 1 50); do
    sluice_port_open "$1" && return 0
    sleep 0.1
  done
  echo "setup-proxies: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

if ! command -v microsocks >/dev/null || ! command -v tinyproxy >/dev/null; then
  if [ -z "${SLUICE_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export SLUICE_APT_UPDATED=1
  fi
  # Keep Debian's own tinyproxy service (port 8888) from starting: a
  # policy-rc.d that denies service starts, for the install only.
  sluice_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    sluice_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends microsocks tinyproxy >/dev/null
  if [ -n "$sluice_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

sluice_proxy_dir=${TMPDIR:-/tmp}/sluice-proxies
mkdir -p "$sluice_proxy_dir"

if ! sluice_port_open 11080; then
  microsocks -i 127.0.0.1 -p 11080 -b 127.0.0.201 >"$sluice_proxy_dir/microsocks.log" 2>&1 &
  CI_PIDS+=($!)
fi
if ! sluice_port_open 11081; then
  microsocks -i 127.0.0.1 -p 11081 -b 127.0.0.202 -u "$sluice_proxy_user" -P "$sluice_proxy_pass" \
    >"$sluice_proxy_dir/microsocks-auth.log" 2>&1 &
  CI_PIDS+=($!)
fi
if ! sluice_port_open 11888; then
  cat >"$sluice_proxy_dir/tinyproxy.conf" <<CONF
Port 11888
Listen 127.0.0.1
Bind 127.0.0.203
Timeout 60
MaxClients 256
Allow 127.0.0.1
BasicAuth $sluice_proxy_user $sluice_proxy_pass
DisableViaHeader Yes
LogLevel Warning
LogFile "$sluice_proxy_dir/tinyproxy.log"
CONF
  tinyproxy -d -c "$sluice_proxy_dir/tinyproxy.conf" >"$sluice_proxy_dir/tinyproxy.out" 2>&1 &
  CI_PIDS+=($!)
fi
sluice_wait_port 11080
sluice_wait_port 11081
sluice_wait_port 11888

export SLUICE_TEST_SOCKS5=socks5://127.0.0.1:11080
export SLUICE_TEST_SOCKS5_SRC=127.0.0.201
export SLUICE_TEST_SOCKS5_AUTH="socks5://$sluice_proxy_user:$sluice_proxy_pass@127.0.0.1:11081"
export SLUICE_TEST_SOCKS5_AUTH_SRC=127.0.0.202
export SLUICE_TEST_TINYPROXY="http://$sluice_proxy_user:$sluice_proxy_pass@127.0.0.1:11888"
export SLUICE_TEST_TINYPROXY_SRC=127.0.0.203
echo "setup-proxies: microsocks on :11080 and :11081 (auth), tinyproxy on :11888 (auth)"
