#!/usr/bin/env bash
# Re-creates imgs/explorer-leader.png, imgs/explorer-committed.png,
# imgs/explorer-counterexample.png and imgs/explorer-membership-2015.png:
# the Raft explorer (`-m explore`) in
# headless Chromium (Debian's `chromium`, driven by playwright-core from npm),
# clicked through the same steps as its browser test
# (raft-check/explorer-test/screenshots.js and lib.js):
#   - the default model: the first server's election timer fires, the second
#     votes for it (explorer-leader.png), its entries reach the second server
#     and commit, a heartbeat carries the commit index (explorer-committed.png);
#   - the model with `--bug forget-vote-on-recovery` (an adapter that forgets
#     its vote on restart): two leaders in term 1, opened as an Election
#     Safety counterexample (explorer-counterexample.png);
#   - stateright's own explorer (`/stateright/`), cropped to its sequence
#     diagram, at the Quorums Overlap counterexample that `-m simulate`
#     finds with `--fault change-before-term-commit` (the 2015 membership
#     bug; the walks take about 30 s) (explorer-membership-2015.png).
#
# Usage: imgs/explorer-screenshot.sh [OUT_DIR]   (default: imgs/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)"
cd "$here/.."
exec raft-check/explorer-test/run.sh screenshots "$out"
