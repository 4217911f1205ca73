// Screenshots of the Raft explorer for the README, from the same page and
// the same clicks as the browser test (lib.js):
//   imgs/explorer-leader.png          the default model, n-first just elected
//   imgs/explorer-committed.png       its entries committed on two servers
//   imgs/explorer-counterexample.png  two leaders in one term (the forgetful
//                                     adapter), opened as a counterexample
//
//   node screenshots.js [OUT_DIR]     (default: the repository's imgs/)
'use strict';

const path = require('path');
const lib = require('./lib');

// Screenshots are of the viewport: the servers, messages, actions and steps.
const VIEWPORT = { width: 1440, height: 960 };
const TIMEOUT_MS = 120000;

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
