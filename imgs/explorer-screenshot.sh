#!/usr/bin/env bash
# Re-creates imgs/explorer-counterexample.png: stateright's explorer showing
# the sequence diagram of an Election Safety counterexample, found in a model
# whose adapter forgets the vote on recovery (`--bug forget-vote-on-recovery`).
#
# 1. `-m check` finds the counterexample and prints its action index path;
# 2. `-m explore` serves the same model on 127.0.0.1;
# 3. headless Chromium (Debian's `chromium`, driven by playwright-core from
#    npm) opens that path in the explorer and saves the screenshot.
#
# Needs: cargo, node/npm, and chromium (`apt-get install -y chromium`).
# Usage: imgs/explorer-screenshot.sh [port]   (default port 3000)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-3000}"
out="imgs/explorer-counterexample.png"
model=(--bug forget-vote-on-recovery --proposals none --max-term 1 --max-log 2 --heartbeats false)

command -v chromium >/dev/null || { echo "chromium is missing: apt-get install -y chromium" >&2; exit 1; }
cargo build --release -q -p raft-check
bin="${CARGO_TARGET_DIR:-target}/release/raft-check"

# The counterexample's action index path ("Action index path: 0/0/4/...")
# is printed right after its "Discovered ... counterexample" line.
path="$("$bin" -m check --depth 11 --threads 1 "${model[@]}" | grep -A 20 '^Discovered "Election Safety" counterexample' |
    grep -m1 '^Action index path: ' | cut -d' ' -f4 || true)"
[ -n "$path" ] || { echo "no Election Safety counterexample found" >&2; exit 1; }
echo "counterexample: $path"

work="$(mktemp -d)"
explorer_pid=""
cleanup() {
    [ -n "$explorer_pid" ] && kill "$explorer_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$bin" -m explore --threads 1 --addr "127.0.0.1:$port" "${model[@]}" >"$work/explorer.log" 2>&1 &
explorer_pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/.status" >/dev/null && break
    sleep 0.2
done

(cd "$work" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
cat >"$work/shot.js" <<'EOF'
const { chromium } = require('playwright-core');
(async () => {
  const [url, file] = process.argv.slice(2);
  // A persistent context is how playwright takes --user-data-dir.
  const browser = await chromium.launchPersistentContext(process.env.PROFILE_DIR, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1500, height: 1100 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage();
  await page.goto(url);
  // The sequence diagram is drawn once the last step of the path is loaded.
  await page.waitForSelector('svg line.svg-event-line', { timeout: 30000 });
  await page.waitForTimeout(500);
  await page.screenshot({ path: file, fullPage: true });
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
EOF
mkdir -p "$work/profile"
PROFILE_DIR="$work/profile" NODE_PATH="$work/node_modules" \
    node "$work/shot.js" "http://127.0.0.1:$port/#/steps/$path" "$PWD/$out"
echo "wrote $out"
