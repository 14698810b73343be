#!/usr/bin/env bash
# Runs ../shared/bench/compare.sh with Chokepoint started from this checkout.
#   bench/compare.sh [peer...]     (default: direct squid proxychain chokepoint)
# Installs what it needs when missing: squid (Debian), proxy-chain (npm, in /tmp).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$here/../shared}
[[ -x $shared/bench/compare.sh ]] || { echo "no $shared/bench/compare.sh" >&2; exit 2; }
if ! command -v squid >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squid >/dev/null) || echo "squid unavailable: skipped" >&2
fi
export PROXYCHAIN_DIR=${PROXYCHAIN_DIR:-/tmp/cp-proxychain}
if [[ ! -d $PROXYCHAIN_DIR/node_modules/proxy-chain ]]; then
  mkdir -p "$PROXYCHAIN_DIR" && (cd "$PROXYCHAIN_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund proxy-chain >/dev/null) || echo "proxy-chain unavailable: skipped" >&2
fi
(cd "$here" && npx tsc -p tsconfig.json)
mkdir -p /tmp/peers-run
export CHOKEPOINT_CMD="exec $here/bin/chokepoint serve --config $here/bench/compare-config.yaml --policy $here/bench/compare-policy.yaml"
exec "$shared/bench/compare.sh" "$@"
