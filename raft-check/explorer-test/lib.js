// What the browser test and the screenshot script share: start `raft-check
// -m explore` on a free port of 127.0.0.1, drive Debian's chromium with
// playwright-core (no browser download), click the page's action buttons,
// and read what each server's box shows.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
// The longest wait for the explorer to print its address (it binds at once;
// the binary is built before).
const START_TIMEOUT_MS = 30000;
// The longest wait for the page to draw a state after a click or a load.
const RENDER_TIMEOUT_MS = 15000;
// How long a stopped explorer gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE_MS = 2000;

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

function binary() {
  if (process.env.RAFT_CHECK_BIN) return process.env.RAFT_CHECK_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
  return path.join(target, 'release', 'raft-check');
}

const running = new Set();

// Starts the explorer with the model flags `args`; resolves to
// { url, stop } once it prints the address it serves on.
function startExplorer(args) {
  const bin = binary();
  if (!fs.existsSync(bin)) {
    throw new Error(`no ${bin}: build it first (cargo build --release -p raft-check), or set RAFT_CHECK_BIN`);
  }
  const child = spawn(bin, ['-m', 'explore', '--addr', '127.0.0.1:0', '--threads', '1', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { running.delete(child); resolve(); return; }
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => { clearTimeout(kill); running.delete(child); resolve(); });
    child.kill('SIGTERM');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`the explorer printed no address within ${START_TIMEOUT_MS} ms:\n${output}`));
    }, START_TIMEOUT_MS);
    const look = (chunk) => {
      output += chunk;
      const m = output.match(/Serving the Raft explorer on (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) { clearTimeout(timer); resolve({ url: m[1], stop, output: () => output }); }
    };
    child.stdout.on('data', look);
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the explorer exited (${code ?? signal}) before serving:\n${output}`));
    });
  });
}

// Runs raft-check with `args` to its end (another mode than explore, e.g.
// `-m simulate`); resolves to its standard output, whatever its exit status
// (1 when it found a counterexample). Rejects if it dies of a signal.
function run(args) {
  const child = spawn(binary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => { stdout += chunk; });
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  return new Promise((resolve, reject) => {
    child.once('error', (e) => { running.delete(child); reject(e); });
    child.once('close', (code, signal) => {
      running.delete(child);
      if (code === null) reject(new Error(`raft-check ${args.join(' ')} died (${signal}):\n${stderr}`));
      else resolve(stdout);
    });
  });
}

// Kills every raft-check still running (for an exit on failure).
function stopAll() {
  for (const child of running) child.kill('SIGKILL');
}

// A fresh chromium profile and one page of the given size.
async function launch(viewport = { width: 1440, height: 900 }) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'raft-explorer-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    args: CHROMIUM_FLAGS,
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(RENDER_TIMEOUT_MS);
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { page, close };
}

const renders = (page) => page.evaluate(() => Number(document.body.dataset.renders || 0));

// Loads `url` and waits until the page has drawn its state.
async function open(page, url) {
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.renders || 0) > 0);
}

// Goes to another route of the same page (a hash) and waits for the drawing.
async function route(page, hash) {
  const before = await renders(page);
  await page.evaluate((h) => { location.hash = h; }, hash);
  await page.waitForFunction((n) => Number(document.body.dataset.renders || 0) > n, before);
}

// Clicks `selector` and waits until the page has drawn again.
async function click(page, selector) {
  const before = await renders(page);
  await page.click(selector);
  await page.waitForFunction((n) => Number(document.body.dataset.renders || 0) > n, before);
}

// Clicks the one action button that matches, e.g.
// { kind: 'deliver', node: 'n1', from: 'n0', detail: 'RequestVote' }, and
// waits until the page has drawn the state it leads to.
async function act(page, want) {
  const selector = 'button.action' + Object.entries(want).map(([k, v]) => `[data-${k}="${v}"]`).join('');
  const buttons = await page.$$(selector);
  if (buttons.length !== 1) {
    const offered = await page.$$eval('button.action', (bs) => bs.map((b) => b.textContent));
    throw new Error(`expected one action ${selector}, found ${buttons.length}; offered:\n  ${offered.join('\n  ')}`);
  }
  const before = await renders(page);
  await buttons[0].click();
  await page.waitForFunction((n) => Number(document.body.dataset.renders || 0) > n, before);
}

// What a server's box shows.
async function server(page, id) {
  return page.$eval(`.server[data-id="${id}"]`, (box) => {
    const field = (name) => {
      const f = box.querySelector(`[data-field="${name}"]`);
      return f ? f.textContent.replace(/^\S+\s/, '').trim() : null;
    };
    return {
      role: box.querySelector('[data-field="role"]').textContent,
      term: Number(field('term')),
      vote: field('vote'),
      commit: field('commit'),
      log: [...box.querySelectorAll('.cell[data-index]')].map((c) => ({
        index: Number(c.dataset.index),
        term: Number(c.dataset.term),
        committed: c.dataset.committed === 'true',
        text: c.querySelector('.box').textContent,
      })),
    };
  });
}

// The servers' ids as the page shows them, in order.
const serverIds = (page) => page.$$eval('.server', (boxes) => boxes.map((b) => b.dataset.id));

// The path of the state shown, from the page's URL.
const currentPath = (page) => page.evaluate(() => location.hash.replace(/^#\/steps\//, '').split('?')[0]);

// The default model, from its initial state: the first server's election
// timer fires, the second grants its vote, the first leads; `atLeader` is
// called there. Then the leader's entries reach the second server, its
// acknowledgement commits them, and a heartbeat carries the commit index to
// it. Returns the three ids [leader, voter, other].
async function electAndCommit(page, atLeader = async () => {}) {
  const [a, b, c] = await serverIds(page);
  await act(page, { kind: 'timeout', node: a, detail: 'Election' });
  await act(page, { kind: 'deliver', node: b, from: a, detail: 'RequestVote' });
  await act(page, { kind: 'deliver', node: a, from: b, detail: 'RequestVoteResponse' });
  await atLeader([a, b, c]);
  await act(page, { kind: 'deliver', node: b, from: a, detail: 'AppendEntries' });
  await act(page, { kind: 'deliver', node: a, from: b, detail: 'AppendEntriesResponse' });
  await act(page, { kind: 'timeout', node: a, detail: 'Heartbeat' });
  await act(page, { kind: 'deliver', node: b, from: a, detail: 'AppendEntries' });
  return [a, b, c];
}

// The model whose adapter forgets a vote on recovery, and the path to two
// leaders in one term: the first server wins the third's vote; the third
// crashes, recovers without its vote, and votes again, for the second.
const FORGETFUL = ['--bug', 'forget-vote-on-recovery', '--proposals', 'none', '--max-term', '1', '--max-log', '2',
  '--heartbeats', 'false'];

async function twoLeaders(page, beforeLast = async () => {}) {
  const [a, b, c] = await serverIds(page);
  await act(page, { kind: 'timeout', node: a, detail: 'Election' });
  await act(page, { kind: 'deliver', node: c, from: a, detail: 'RequestVote' });
  await act(page, { kind: 'deliver', node: a, from: c, detail: 'RequestVoteResponse' });
  await act(page, { kind: 'crash', node: c });
  await act(page, { kind: 'recover', node: c });
  await act(page, { kind: 'timeout', node: b, detail: 'Election' });
  await act(page, { kind: 'deliver', node: c, from: b, detail: 'RequestVote' });
  await beforeLast([a, b, c]);
  await act(page, { kind: 'deliver', node: b, from: c, detail: 'RequestVoteResponse' });
  return [a, b, c];
}

module.exports = {
  REPO, startExplorer, run, stopAll, launch, open, route, click, act, server, serverIds, currentPath, electAndCommit,
  FORGETFUL, twoLeaders,
};
