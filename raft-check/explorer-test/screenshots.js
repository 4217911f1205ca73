// Screenshots of the Raft explorer for the README, from the same page and
// the same clicks as the browser test (lib.js):
//   imgs/explorer-leader.png          the default model, n-first just elected
//   imgs/explorer-committed.png       its entries committed on two servers
//   imgs/explorer-counterexample.png  two leaders in one term (the forgetful
//                                     adapter), opened as a counterexample
// and one of stateright's own explorer (`/stateright/`), cropped to its
// sequence diagram:
//   imgs/explorer-membership-2015.png the 2015 membership bug: the Quorums
//                                     Overlap counterexample that
//                                     MEMBERSHIP_2015 finds (its path as the
//                                     CLI prints it; stateright's page takes
//                                     the same action indices)
//
//   node screenshots.js [OUT_DIR]     (default: the repository's imgs/)
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const lib = require('./lib');

// The Raft explorer's screenshots are of the viewport: the servers, messages,
// actions and steps.
const VIEWPORT = { width: 1440, height: 960 };
// The simulation below takes about 30 s of the release build.
const TIMEOUT_MS = 300000;

// The walks that find the 2015 membership bug (the command the README quotes
// beside the image), and the property whose counterexample is drawn.
const MEMBERSHIP_2015 = ['-m', 'simulate', '--nodes', '5', '--voters', '4', '--max-changes', '2', '--crashes', '0',
  '--max-term', '4', '--max-log', '8', '--fault', 'change-before-term-commit', '--runs', '10000', '--steps', '120',
  '--weights', '16,4,1,1,64', '--seed', '1'];
const MEMBERSHIP_PROPERTY = 'Quorums Overlap';
// What its sequence diagram must show, lest the README describe another
// path: n1 (column 0) removes n4, n3 (column 2) promotes n5.
const MEMBERSHIP_EVENTS = ['Timeout(OperatorRemove(n4))', 'Timeout(OperatorPromote(n5))'];

// Runs MEMBERSHIP_2015 (its replay files in a directory removed after) and
// reads, from the report, the explorer flags and the path of the
// counterexample to MEMBERSHIP_PROPERTY.
async function membershipCounterexample() {
  const replays = fs.mkdtempSync(path.join(os.tmpdir(), 'raft-explorer-replays-'));
  let report;
  try {
    report = await lib.run([...MEMBERSHIP_2015, '--replay-dir', replays]);
  } finally {
    fs.rmSync(replays, { recursive: true, force: true });
  }
  const blocks = report.split(/\n(?=Counterexample \d+: )/);
  const block = blocks.find((b) => b.startsWith('Counterexample ') && b.includes(`: ${MEMBERSHIP_PROPERTY} FAILS`));
  if (!block) throw new Error(`no ${MEMBERSHIP_PROPERTY} counterexample in the report:\n${report}`);
  const flags = block.match(/Explorer: run `cargo run --release -- -m explore ([^`]*)`/);
  const url = block.match(/http:\/\/\S+\/#\/steps\/([\d/]+)\?property=/);
  if (!flags || !url) throw new Error(`no explorer command or URL in:\n${block}`);
  return { flags: flags[1].split(/\s+/).filter(Boolean), steps: url[1] };
}

// Opens stateright's explorer at `steps` and crops to the current state:
// the sequence diagram and, below it, the last step's output and state.
async function sequenceDiagram(page, explorer, steps, file) {
  await page.goto(`${explorer.url}stateright/#/steps/${steps}`);
  const last = MEMBERSHIP_EVENTS[MEMBERSHIP_EVENTS.length - 1];
  // The page walks the path one request a step, then draws the last state.
  await page.waitForFunction((label) => [...document.querySelectorAll('svg text')]
    .some((t) => t.textContent === label), last);
  const labels = await page.$$eval('svg text', (ts) => ts.map((t) => t.textContent));
  for (const event of MEMBERSHIP_EVENTS) {
    if (!labels.includes(event)) throw new Error(`the sequence diagram has no ${event}: ${labels.join(', ')}`);
  }
  const clip = await page.$eval('section.main-flex-right', (section) => {
    const heading = section.querySelector('.heading-with-controls').getBoundingClientRect();
    const shown = [...section.children].filter((e) => e.offsetParent !== null);
    const bottom = Math.max(...shown.map((e) => e.getBoundingClientRect().bottom));
    const box = section.getBoundingClientRect();
    const pad = 8; // but 2 above the heading, below the page's header
    return {
      x: Math.max(0, box.left - pad), y: Math.max(0, heading.top - 2),
      width: box.width + 2 * pad, height: bottom - heading.top + 2 + pad,
    };
  });
  clip.width = Math.min(clip.width, VIEWPORT.width - clip.x);
  await page.screenshot({ path: file, clip, fullPage: true });
  console.log(`wrote ${file}`);
}

async function main() {
  const out = path.resolve(process.argv[2] || path.join(lib.REPO, 'imgs'));
  const explorers = [];
  const { page, close } = await lib.launch(VIEWPORT);
  const shot = async (name) => {
    const file = path.join(out, `explorer-${name}.png`);
    await page.mouse.move(0, 0); // no button left in its hover state
    await page.screenshot({ path: file });
    console.log(`wrote ${file}`);
  };
  // The simulation runs while the other screenshots are taken.
  const membership = membershipCounterexample();
  membership.catch(() => {}); // awaited below
  try {
    const plain = await lib.startExplorer([]);
    explorers.push(plain);
    await lib.open(page, plain.url);
    await lib.electAndCommit(page, async () => shot('leader'));
    await shot('committed');

    const forgetful = await lib.startExplorer(lib.FORGETFUL);
    explorers.push(forgetful);
    await lib.open(page, forgetful.url);
    await lib.twoLeaders(page);
    const steps = await lib.currentPath(page);
    await lib.route(page, `#/steps/${steps}?property=Election%20Safety`);
    await shot('counterexample');

    const counterexample = await membership;
    const membershipExplorer = await lib.startExplorer(counterexample.flags);
    explorers.push(membershipExplorer);
    const file = path.join(out, 'explorer-membership-2015.png');
    await sequenceDiagram(page, membershipExplorer, counterexample.steps, file);
  } finally {
    await close();
    await Promise.all(explorers.map((e) => e.stop()));
  }
}

const deadline = setTimeout(() => {
  console.error(`screenshots: not done within ${TIMEOUT_MS} ms`);
  lib.stopAll();
  process.exit(1);
}, TIMEOUT_MS);

main().then(() => clearTimeout(deadline), (e) => {
  console.error(e);
  lib.stopAll();
  process.exit(1);
});
