#!/usr/bin/env bash
# The Raft explorer in a real browser, as CI runs it.
#
#   raft-check/explorer-test/run.sh [test | screenshots [OUT_DIR]]
#
# Installs what is missing (Debian's chromium with apt-get, when run as
# root; playwright-core with `npm ci`, from package-lock.json: no browser
# download), builds raft-check in release, then runs test.js (the default)
# or screenshots.js (imgs/explorer-*.png, or OUT_DIR). CARGO_TARGET_DIR is
# honoured; each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")"
what=${1:-test}
case "$what" in
  test) script=test.js ;;
  screenshots) script=screenshots.js ;;
  *) echo "run.sh: unknown argument $what (test or screenshots [OUT_DIR])" >&2; exit 2 ;;
esac
log() { echo "explorer-test: $*" >&2; }

t0=$SECONDS
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    log "chromium installed in $((SECONDS - t0)) s"
  else
    log "needs /usr/bin/chromium: apt-get install -y chromium"
    exit 1
  fi
fi
command -v node >/dev/null && command -v npm >/dev/null || { log "needs node and npm"; exit 1; }
want=$(node -p "require('./package.json').dependencies['playwright-core']")
have=$(node -p "try { require('./node_modules/playwright-core/package.json').version } catch (e) { '' }")
if [ "$have" != "$want" ]; then
  t1=$SECONDS
  npm ci --no-audit --no-fund --loglevel=error >&2
  log "npm ci (playwright-core $want) in $((SECONDS - t1)) s"
fi
t1=$SECONDS
(cd ../.. && cargo build --release -q -p raft-check)
log "raft-check built in $((SECONDS - t1)) s"
t1=$SECONDS
shift || true
node "$script" "$@"
log "$script passed in $((SECONDS - t1)) s ($((SECONDS - t0)) s in all)"
