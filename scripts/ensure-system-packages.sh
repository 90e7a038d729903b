#!/usr/bin/env bash
# The test suite uses system programs from Debian's packages: nats-server (the benchmark
# baseline), chromium (the benchmark report renders in it), strace (a test watches a peer
# sync its store before it acknowledges), openssl (the TLS tests make their certificates) and
# postgresql (the PostgreSQL store's tests start a temporary cluster of it, test/support/postgres.ts)
# and prometheus (server and promtool: the alert rules are unit-tested and fired against a real
# Prometheus, test/deploy/alerts.test.ts).
# Run before `npm test` (pretest): installs them when
# missing and this user can (root with apt-get).
set -u
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
missing=()
have nats-server || missing+=(nats-server)
have chromium || missing+=(chromium)
have strace || missing+=(strace)
have openssl || missing+=(openssl)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
{ have prometheus && have promtool; } || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (Debian packages, for the benchmark harness tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null && exit 0
  echo "apt-get could not install ${missing[*]}" >&2
  exit 1
fi
echo "the tests need ${missing[*]} (Debian: apt-get install ${missing[*]}); run as root to let npm test install them" >&2
exit 1
