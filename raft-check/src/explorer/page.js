// The Raft explorer's page: draws one state of the model from /api/state/<path>
// and steps it with the next actions. The route lives in the URL's hash,
// as in stateright's explorer: #/steps/<path>[?property=NAME][&step=K].
'use strict';

const TERM_COLOURS = ['#8c959f', '#0969da', '#e16f24', '#1a7f37', '#8250df', '#cf222e', '#1b7c83', '#9a6700'];
const termColour = (t) => TERM_COLOURS[t % TERM_COLOURS.length];
const KIND_ORDER = ['deliver', 'timeout', 'crash', 'recover', 'drop', 'random'];
// The longest the page waits for the checker behind stateright's page
// between two looks at its status, and how many looks it takes at most.
const CHECKER_POLL_MS = 1000;
const CHECKER_POLLS_MAX = 3600;

let model = null;
// Whether this page asked the checker to run.
let checkerStarted = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: 'no-store' });
  const body = await response.json().catch(() => ({ error: `${url}: ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `${url}: ${response.status}`);
  return body;
}

// #/steps/0/4/2?property=Election%20Safety&step=3
function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/steps/0';
  const [where, query] = hash.split('?');
  const parts = where.split('/').filter((p) => p !== '');
  const path = parts[0] === 'steps' && parts.length > 1 ? parts.slice(1) : ['0'];
  const params = new URLSearchParams(query || '');
  const step = params.has('step') ? parseInt(params.get('step'), 10) : null;
  return { path, property: params.get('property'), step: Number.isNaN(step) ? null : step };
}

function routeHash(path, property, step) {
  const params = new URLSearchParams();
  if (property) params.set('property', property);
  if (step !== null && step !== undefined) params.set('step', String(step));
  const query = params.toString().replace(/\+/g, '%20');
  return `#/steps/${path.join('/')}${query ? '?' + query : ''}`;
}

async function render() {
  const route = parseRoute();
  try {
    if (!model) model = await getJSON('/api/model');
    const full = await getJSON(`/api/state/${route.path.join('/')}`);
    const last = full.steps.length - 1;
    const at = route.step === null ? last : Math.max(0, Math.min(route.step, last));
    const shown = at === last ? full : await getJSON(`/api/state/${route.path.slice(0, at + 1).join('/')}`);
    document.getElementById('error').hidden = true;
    draw(full, shown, at, route);
  } catch (e) {
    const box = document.getElementById('error');
    box.hidden = false;
    box.textContent = `This path does not name a state of this model: ${e.message}. ` +
      'A path indexes the actions of one model: start the explorer with the flags of the check that printed it.';
  }
  // Tests wait for this count to grow after a click.
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}

function draw(full, shown, at, route) {
  // One flag and its value never break across lines.
  document.getElementById('model-summary').replaceChildren(...model.summary.split(/ (?=--)/)
    .map((flag) => el('span', { class: 'flag', text: flag })));
  document.getElementById('stateright-link').href = `/stateright/#/steps/${shown.path}`;
  drawBanner(full, at, route);
  const last = full.steps.length - 1;
  document.getElementById('state-note').textContent =
    `after step ${at} of ${last}` + (shown.within_bounds ? '' : ' (outside the model\'s bounds: the checker does not go there)') +
    ` · leaders elected on this path: ${shown.leaders.length ? shown.leaders.join(', ') : 'none yet'}`;
  document.getElementById('servers').replaceChildren(...shown.servers.map(drawServer));
  document.getElementById('clients').replaceChildren(
    ...shown.clients.map((c) => el('div', { 'data-client': c.id }, `${c.id}${c.up ? '' : ' (down)'}: ${c.text}`)));
  drawMessages(shown.messages);
  drawActions(shown.actions);
  drawSteps(full, at, route);
  drawProperties(shown);
  drawLegend();
}

function drawBanner(full, at, route) {
  const banner = document.getElementById('banner');
  if (!route.property) { banner.hidden = true; return; }
  banner.hidden = false;
  const info = model.properties.find((p) => p.name === route.property);
  const total = full.steps.length - 1;
  const steps = `${total} step${total === 1 ? '' : 's'}`;
  if (!info) {
    banner.className = 'neutral';
    banner.replaceChildren(el('strong', { text: `No property "${route.property}" in this model` }),
      ` (it has: ${model.properties.map((p) => p.name).join(', ')}).`);
    return;
  }
  const always = info.expectation !== 'Sometimes';
  const first = full.steps.find((s) => (always ? s.broken : s.reached).includes(info.name));
  if (always && first) {
    banner.className = 'broken';
    banner.replaceChildren(el('strong', { text: `${info.name} broken` }),
      ` — counterexample of ${steps}; the property first fails after step ${first.number}: `,
      el('code', { text: first.label }), '.');
  } else if (!always && first) {
    banner.className = 'example';
    banner.replaceChildren(el('strong', { text: `${info.name}: example` }),
      ` — ${steps}; the property first holds after step ${first.number}: `, el('code', { text: first.label }), '.');
  } else {
    banner.className = 'neutral';
    banner.replaceChildren(el('strong', { text: always ? `${info.name} holds along this path` : `${info.name} not reached` }),
      ` (${steps}): not a ${always ? 'counterexample' : 'example'} in this model — was the explorer started with the check's flags?`);
  }
  banner.dataset.property = info.name;
  banner.dataset.firstStep = first ? String(first.number) : '';
}

function drawServer(s) {
  const cells = [];
  if (s.snapshot) {
    cells.push(el('span', { class: 'cell snapshot', title: `entries up to ${s.snapshot} are in a snapshot` },
      el('span', { class: 'index', text: '≤' + s.snapshot.split('@')[0].replace('i', '') }),
      el('span', { class: 'box', text: 'snap' }), el('span', { class: 'mark', text: '✓' })));
  }
  for (const e of s.log) {
    cells.push(el('span', {
      class: `cell${e.committed ? ' committed' : ''}`, 'data-index': e.index, 'data-term': e.term,
      'data-committed': e.committed ? 'true' : 'false',
      title: `index ${e.index}, term ${e.term}, ${e.text === '·' ? 'no-op' : 'command ' + e.text}` +
        (e.committed ? ', committed' : ', not known committed'),
    },
    el('span', { class: 'index', text: e.index }),
    el('span', { class: 'box', style: `background:${termColour(e.term)};border-color:${termColour(e.term)}`, text: e.text }),
    el('span', { class: 'mark', text: e.committed ? '✓' : '' })));
  }
  if (cells.length === 0) cells.push(el('span', { class: 'empty', text: 'empty log' }));
  const fact = (name, value, label) => el('span', { 'data-field': name }, el('b', { text: label }), ' ', value);
  return el('div', { class: `server role-${s.role}${s.changed ? ' changed' : ''}`, 'data-id': s.id, 'data-role': s.role },
    el('div', { class: 'server-head' },
      el('span', { class: 'server-id', text: s.id }),
      el('span', { class: 'role', 'data-field': 'role', text: s.role }),
      s.changed ? el('span', { class: 'changed-tag', text: 'changed by the last step' }) : null),
    el('div', { class: 'facts' },
      fact('term', s.term, 'term'),
      fact('vote', s.vote || 'none', 'vote'),
      s.up ? fact('leader', s.leader || 'unknown', 'leader') : null,
      s.up ? fact('commit', s.commit, 'commit') : fact('commit', '— (volatile)', 'commit'),
      s.pending ? fact('pending', s.pending, 'pending') : null,
      s.votes.length ? fact('votes', s.votes.join(' '), 'votes from') : null),
    el('div', { class: 'log', 'data-field': 'log' }, cells),
    s.progress.length ? el('div', { class: 'progress' }, 'match/next: ',
      s.progress.map((p) => `${p.peer} ${p.match_index}/${p.next_index}`).join(' · ')) : null,
    s.up ? el('div', { class: 'timers' }, 'timers: ', s.timers.length ? s.timers.join(', ') : 'none') : null,
    s.broken.length ? el('div', { class: 'broken' }, 'broken: ', s.broken.join('; ')) : null,
    el('div', { class: 'raft mono', title: 'raft-core\'s own text of this state (see the legend)', text: s.raft }));
}

function drawMessages(messages) {
  document.getElementById('message-count').textContent = `(${messages.length})`;
  const rows = messages.map((m) => el('tr', { 'data-from': m.from, 'data-to': m.to, 'data-kind': m.kind },
    el('td', { class: 'route', text: `${m.from} → ${m.to}` }), el('td', { class: 'mono', text: m.text })));
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { class: 'none', text: 'none' })));
  document.getElementById('messages').replaceChildren(...rows);
}

function drawActions(actions) {
  const groups = new Map();
  for (const a of actions) {
    if (!groups.has(a.node)) groups.set(a.node, []);
    groups.get(a.node).push(a);
  }
  const order = (a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.index - b.index;
  const nodes = [...groups.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const out = nodes.map((node) => el('div', { class: 'group' },
    el('div', { class: 'group-name', text: `at ${node}` }),
    groups.get(node).sort(order).map((a) => {
      const why = [];
      if (!a.changes) why.push(el('span', { class: 'why soft', text: ' (changes nothing)' }));
      if (!a.within_bounds) why.push(el('span', { class: 'why soft', text: ' (outside the model\'s bounds)' }));
      if (a.breaks.length) why.push(el('span', { class: 'why', text: ` breaks ${a.breaks.join(', ')}` }));
      return el('button', {
        type: 'button',
        class: `action${a.changes ? '' : ' inert'}${a.within_bounds ? '' : ' outside'}${a.breaks.length ? ' breaks' : ''}`,
        'data-index': a.index, 'data-kind': a.kind, 'data-node': a.node, 'data-from': a.from, 'data-detail': a.detail,
        onclick: () => { location.hash = routeHash(a.path.split('/'), null, null); },
      }, a.label, why);
    })));
  if (out.length === 0) out.push(el('p', { class: 'note', text: 'none: no action is possible in this state' }));
  document.getElementById('actions').replaceChildren(...out);
}

function drawSteps(full, at, route) {
  const path = route.path;
  document.getElementById('step-count').textContent = `(${full.steps.length - 1}; click one to see the state after it)`;
  const items = full.steps.map((s) => {
    const flags = [
      ...s.broken.map((n) => el('span', { class: 'flag bad', title: `${n} fails in the state after this step`, text: `✗ ${n}` })),
      ...(route.property ? s.reached.filter((n) => n === route.property)
        .map((n) => el('span', { class: 'flag good', text: `✓ ${n}` })) : []),
    ];
    return el('li', { class: `${s.number === at ? 'selected' : ''}${s.changed ? '' : ' unchanged'}`, 'data-step': s.number },
      el('a', { href: routeHash(path, route.property, s.number) },
        el('span', { class: 'label', text: s.label }), flags,
        s.after ? el('span', { class: 'after', text: `${s.node}: ${s.after}` }) : null));
  });
  const list = document.getElementById('steps');
  list.replaceChildren(...items);
  const selected = list.querySelector('li.selected');
  if (selected) selected.scrollIntoView({ block: 'nearest' });
}

function drawProperties(shown) {
  const item = (p) => {
    const always = p.expectation !== 'Sometimes';
    const [mark, cls, title] = always
      ? (p.holds ? ['✓', 'holds', 'holds here'] : ['✗', 'bad', 'broken here'])
      : (p.holds ? ['✓', 'good', 'reached here'] : ['·', 'kind', 'not reached here']);
    return el('li', { 'data-property': p.name, 'data-holds': p.holds ? 'true' : 'false', class: cls, title },
      el('span', { class: 'mark', text: mark }), ' ', p.name);
  };
  const group = (name, note, props) => el('div', {},
    el('div', { class: 'heading' }, name, ' ', el('span', { class: 'kind', text: note })),
    el('ul', {}, props.map(item)));
  document.getElementById('properties').replaceChildren(
    group('Always', '(✗: broken here)', shown.properties.filter((p) => p.expectation !== 'Sometimes')),
    group('Sometimes', '(✓: reached here)', shown.properties.filter((p) => p.expectation === 'Sometimes')));
}

function drawLegend() {
  const sample = (term, committed, text) => el('span', { class: `cell${committed ? ' committed' : ''}` },
    el('span', { class: 'index', text: '' }),
    el('span', { class: 'box', style: `background:${termColour(term)};border-color:${termColour(term)}`, text }),
    el('span', { class: 'mark', text: committed ? '✓' : '' }));
  document.getElementById('legend-cells').replaceChildren(
    ...[1, 2, 3].map((t) => el('span', { class: 'sample' }, sample(t, true, t === 1 ? '·' : 'a'), sample(t, false, 'b'), ` term ${t}`)),
    el('span', { class: 'note', text: 'solid ✓: committed (as this server knows); pale dashed: not yet' }));
  document.getElementById('legend-table').replaceChildren(
    ...model.legend.map((l) => el('tr', {}, el('td', { text: l.sign }), el('td', { text: l.meaning }))));
}

// The checker behind stateright's page: run it, then list what it finds.
async function checkerStatus() {
  const status = await getJSON('/.status');
  document.getElementById('checker-status').textContent = checkerStarted || status.done
    ? `${status.unique_state_count} unique states, depth ${status.max_depth}${status.done ? ', done' : ', running'}`
    : 'not run yet';
  const found = status.properties.filter(([, , path]) => path);
  document.getElementById('discoveries').replaceChildren(...found.map(([expectation, name, path]) => {
    const what = expectation === 'Sometimes' ? 'example' : 'counterexample';
    return el('li', { 'data-property': name },
      el('a', { href: routeHash(path.split('/'), name, null), class: expectation === 'Sometimes' ? '' : 'bad' },
        `${name}: ${what} (${path.split('/').length - 1} steps)`));
  }));
  return status;
}

async function runChecker() {
  const button = document.getElementById('run-checker');
  button.disabled = true;
  checkerStarted = true;
  await fetch('/.runtocompletion', { method: 'POST' });
  for (let polls = 0; polls < CHECKER_POLLS_MAX; polls++) {
    const status = await checkerStatus().catch(() => null);
    if (status && (status.done || status.properties.every(([, , path]) => path))) break;
    await new Promise((resolve) => setTimeout(resolve, CHECKER_POLL_MS));
  }
}

document.getElementById('run-checker').addEventListener('click', runChecker);
window.addEventListener('hashchange', render);
render();
checkerStatus().catch(() => {});
