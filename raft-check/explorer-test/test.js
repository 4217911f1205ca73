// The Raft explorer in a real browser (Debian's chromium, driven by
// playwright-core): load the page, click through an election to a
// committed entry and check what every server's box shows; then open a
// counterexample (two leaders in one term, in a model whose adapter forgets
// a vote on recovery) and check that the page names the broken property,
// both along a path clicked by hand and from the checker's own discovery,
// and that stateright's own page, served beside it, draws the same path.
//
//   node test.js        (after cargo build --release -p raft-check)
//
// Every explorer it starts is stopped at the end, and every wait is bounded
// (the whole test too: TEST_TIMEOUT_MS).
'use strict';

const assert = require('assert/strict');
const lib = require('./lib');

const TEST_TIMEOUT_MS = 180000;
// The checker behind stateright's page explores the small forgetful model
// depth-first until it finds two leaders: seconds.
const DISCOVERY_TIMEOUT_MS = 90000;

function expectServer(actual, want, id) {
  for (const [k, v] of Object.entries(want)) {
    assert.deepEqual(actual[k], v, `${id}: ${k} is ${JSON.stringify(actual[k])}, expected ${JSON.stringify(v)}`);
  }
}

async function election(page, url) {
  await lib.open(page, url);
  const ids = await lib.serverIds(page);
  assert.equal(ids.length, 3, `three server boxes, not ${ids.join(', ')}`);
  for (const id of ids) {
    expectServer(await lib.server(page, id), { role: 'Follower', term: 0, vote: 'none', commit: '0', log: [] }, id);
  }

  const [a, b, c] = await lib.electAndCommit(page, async ([a, b, c]) => {
    expectServer(await lib.server(page, a), { role: 'Leader', term: 1, vote: a }, a);
    expectServer(await lib.server(page, b), { role: 'Follower', term: 1, vote: a, log: [] }, b);
    expectServer(await lib.server(page, c), { role: 'Follower', term: 0, vote: 'none', log: [] }, c);
    const leaderLog = (await lib.server(page, a)).log;
    assert.ok(leaderLog.length >= 1 && leaderLog.every((e) => e.term === 1 && !e.committed),
      `${a}'s log: entries of term 1, none committed yet: ${JSON.stringify(leaderLog)}`);
  });

  // The leader appended its term's no-op and its own start proposal; both
  // are on two of three servers, so committed, and the heartbeat told b.
  const leader = await lib.server(page, a);
  const want = [{ index: 1, term: 1, committed: true, text: '·' }, { index: 2, term: 1, committed: true, text: leader.log[1]?.text }];
  expectServer(leader, { role: 'Leader', term: 1, vote: a, commit: '2', log: want }, a);
  expectServer(await lib.server(page, b), { role: 'Follower', term: 1, vote: a, commit: '2', log: want }, b);
  expectServer(await lib.server(page, c), { role: 'Follower', term: 0, vote: 'none', commit: '0', log: [] }, c);
  assert.match(leader.log[1].text, /^[a-z]$/, 'the second entry is a one-letter start proposal');

  const steps = await page.$$eval('#steps li', (lis) => lis.map((li) => li.textContent));
  assert.equal(steps.length, 8, `the initial state and seven steps: ${steps.join(' | ')}`);
  const verdict = (name) => page.$eval(`#properties li[data-property="${name}"]`, (li) => li.dataset.holds);
  assert.equal(await verdict('Election Liveness'), 'true', 'Election Liveness is reached');
  assert.equal(await verdict('Election Safety'), 'true', 'Election Safety holds');
  const toC = await page.$$(`#messages tr[data-to="${c}"][data-kind="RequestVote"]`);
  assert.equal(toC.length, 1, `the RequestVote to ${c} is still in flight`);
  const legend = await page.$$eval('#legend-table td:first-child', (tds) => tds.map((td) => td.textContent));
  assert.ok(legend.includes('t1/vote n2; t1/no vote') && legend.includes('i3; i3@t2'), `the legend: ${legend.join(' | ')}`);
  console.log(`ok: election and commit: ${a} leads term 1, ${a} and ${b} hold two committed entries, ${c} heard nothing`);
}

async function counterexample(page, url) {
  await lib.open(page, url);
  const [a, b, c] = await lib.twoLeaders(page, async ([, second]) => {
    const last = await page.$$(`button.action[data-kind="deliver"][data-node="${second}"][data-detail="RequestVoteResponse"]`);
    assert.equal(last.length, 1);
    assert.match(await last[0].textContent(), /breaks Election Safety/, 'the button says what it breaks');
  });
  expectServer(await lib.server(page, a), { role: 'Leader', term: 1 }, a);
  expectServer(await lib.server(page, b), { role: 'Leader', term: 1 }, b);
  expectServer(await lib.server(page, c), { role: 'Follower', term: 1, vote: b }, c);

  const path = await lib.currentPath(page);
  await lib.route(page, `#/steps/${path}?property=Election%20Safety`);
  const banner = await page.$eval('#banner', (e) => ({ hidden: e.hidden, text: e.textContent, first: e.dataset.firstStep }));
  assert.equal(banner.hidden, false);
  assert.match(banner.text, /^Election Safety broken/);
  assert.equal(banner.first, '8', 'the property first fails after the eighth step');
  // (Persist Before Send fails too, from the recovery on: the recovered
  // node's memory is not what it persisted.)
  const flagged = await page.$$eval('#steps li', (lis) => lis
    .filter((li) => [...li.querySelectorAll('.flag.bad')].some((f) => f.textContent.includes('Election Safety')))
    .map((li) => li.dataset.step));
  assert.deepEqual(flagged, ['8'], 'the steps list marks the step that breaks it');

  // A step of the list shows the state after it, the whole path still listed.
  await lib.click(page, '#steps li[data-step="3"] a');
  assert.match(await page.evaluate(() => location.hash), /step=3$/);
  expectServer(await lib.server(page, a), { role: 'Leader', term: 1 }, a);
  expectServer(await lib.server(page, b), { role: 'Follower', term: 0 }, b);
  assert.equal(await page.$$eval('#steps li', (lis) => lis.length), 9);
  console.log(`ok: counterexample by hand: ${a} and ${b} both lead term 1; the page names Election Safety and step 8`);

  // stateright's own page, beside it, draws the same path's sequence diagram.
  await lib.route(page, `#/steps/${path}`);
  await page.click('#stateright-link');
  await page.waitForSelector('svg line.svg-event-line');
  const drawn = await page.$$eval('svg .svg-event-label', (labels) => labels.map((l) => l.textContent));
  assert.ok(drawn.includes('Crash') && drawn.includes('Recover'), `the sequence diagram: ${drawn.join(', ')}`);
  await lib.open(page, url);
  console.log('ok: stateright\'s explorer draws the same path at /stateright/');

  // The checker finds one itself, and its link opens the same view.
  await lib.route(page, '#/steps/0');
  await page.click('#run-checker');
  const link = await page.waitForSelector('#discoveries li[data-property="Election Safety"] a',
    { timeout: DISCOVERY_TIMEOUT_MS });
  const before = await page.evaluate(() => Number(document.body.dataset.renders));
  await link.click();
  await page.waitForFunction((n) => Number(document.body.dataset.renders) > n, before);
  assert.match(await page.$eval('#banner', (e) => e.textContent), /^Election Safety broken/);
  const leaders = await page.$$eval('.server[data-role="Leader"]', (boxes) => boxes.length);
  assert.ok(leaders >= 1, 'the checker\'s counterexample ends with a leader on the page');
  console.log('ok: the checker\'s Election Safety counterexample opens with the property named');
}

async function main() {
  const explorers = [];
  const { page, close } = await lib.launch();
  try {
    const plain = await lib.startExplorer([]);
    explorers.push(plain);
    await election(page, plain.url);
    const forgetful = await lib.startExplorer(lib.FORGETFUL);
    explorers.push(forgetful);
    await counterexample(page, forgetful.url);
  } finally {
    await close();
    await Promise.all(explorers.map((e) => e.stop()));
  }
}

const deadline = setTimeout(() => {
  console.error(`explorer browser test: not done within ${TEST_TIMEOUT_MS} ms`);
  lib.stopAll();
  process.exit(1);
}, TEST_TIMEOUT_MS);

main().then(() => {
  clearTimeout(deadline);
  console.log('explorer browser test: passed');
}, (e) => {
  console.error(e);
  lib.stopAll();
  process.exit(1);
});
