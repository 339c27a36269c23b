// Phalanx live page: watches every validator's /events stream and shows the
// testnet's state, throughput, blocks, view changes, evidence and a slowed
// replay of one consensus slot.
//
// Events arrive at hundreds per second, so handlers only update the state
// below; the DOM is redrawn from that state on a timer (twice a second), and
// the message-flow animation runs on requestAnimationFrame only while dots
// are moving.
'use strict';

(() => {

// ---------------------------------------------------------------- settings

const RENDER_MS = 500;             // table refresh period
const CHART_MS = 1000;             // charts slide once a second
const BLOCKS_KEPT = 300;           // per node
const BLOCKS_SHOWN = 20;
const RATE_WINDOW_S = 300;         // 5 minutes of per-second samples
const MSGS_KEPT = 2000;            // per node
const VIEW_CHANGES_KEPT = 50;
const TIMEOUTS_KEPT = 500;
const REASON_WINDOW_MS = 10000;    // timeouts this long before a view counts as its cause
const RECONNECT_MS = 3000;         // when EventSource gives up for good
const REPLAY_EVERY_MS = 5000;
const REPLAY_BASE_MS = 4000;       // one slot at speed ×1
const REPLAY_SETTLE_MS = 400;      // let every node's next batch arrive before replaying a slot
const VC_SETTLE_MS = 3000;         // a view change nobody entered is replayed after this
const SPEEDS = [0.25, 0.5, 1, 2, 4];

// The behaviours offered by the fault buttons (the node validates them).
const BEHAVIOURS = ['honest', 'silent', 'equivocate', 'bad-sig', 'stale-replay', 'delay:500']; // as the node names them (adversary::BEHAVIOURS)

// Timeout kinds that explain a view change; the others are routine.
const VIEW_TIMEOUTS = new Set(['progress', 'view_change']);

const SLOT_KINDS = new Set(['pre_prepare', 'pre_prepare_echo', 'prepare', 'commit']);
const VC_KINDS = new Set(['view_change', 'new_view']);
// Phase order inside a replayed group; clocks differ slightly between nodes,
// so the protocol order is more trustworthy than raw timestamps.
const PHASE_ORDER = {
  pre_prepare: 0, pre_prepare_echo: 1, prepare: 2, commit: 3,
  view_change: 0, new_view: 1,
};

const KIND_LABEL = {
  pre_prepare: 'PRE-PREPARE', pre_prepare_echo: 'PRE-PREPARE echo', prepare: 'PREPARE',
  commit: 'COMMIT', checkpoint: 'CHECKPOINT', view_change: 'VIEW-CHANGE',
  new_view: 'NEW-VIEW', evidence: 'EVIDENCE', complaint: 'COMPLAINT',
};
const COLOURED_KINDS = new Set(['pre_prepare', 'prepare', 'commit', 'view_change', 'new_view']);

const MODE_BADGE = {
  pbft: ['PBFT: every block final', 'mode-pbft'],
  fallback: ['fallback: no PBFT quorum, new blocks are tentative', 'mode-fallback'],
  recovering: ['recovering: PBFT quorum back, catching up', 'mode-recovering'],
};

const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- state

const S = {
  n: 0,
  selfIndex: null,
  hello: null,          // the serving node's hello
  nodes: [],            // per validator, see newNode
  missed: 0,
  viewEntries: new Map(),   // view -> {view, primary, t, by:Set}
  timeouts: [],             // {node, t, kind, view}
  evidence: new Map(),      // offender -> {t, by:Set}
  dirty: true,
  built: false,
};

function newNode(i) {
  return {
    index: i,
    api: null,          // base URL from hello.nodes (null: not reachable)
    base: null,         // what fetch/EventSource use ('' for our own origin)
    stream: null,
    open: false,
    up: false,          // open and has said hello since
    hello: null,
    status: null,
    blocks: new Map(),  // height -> block
    rate: new Map(),    // unix second -> {txs, lat, cnt}
    since: null,        // first second we have data for (charts start there)
    msgs: [],
  };
}

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v; else e.setAttribute(k, String(v));
  }
  return e;
}

// Writing identical text still costs a style recalculation; skip it.
function setText(e, s) {
  s = String(s);
  if (e.textContent !== s) e.textContent = s;
}
function setAttr(e, k, v) {
  v = String(v);
  if (e.getAttribute(k) !== v) e.setAttribute(k, v);
}

const list = (xs) => xs.join(', ');
const nodesWord = (xs) => (xs.length === 1 ? 'node ' : 'nodes ') + list(xs);
const kindLabel = (k) => KIND_LABEL[k] || String(k).toUpperCase().replace(/_/g, '-');
const kindClass = (k) => 'k-' + (COLOURED_KINDS.has(k) ? k : 'other');
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const short = (h) => (h ? String(h).slice(0, 8) : '');
const quorum = (n) => n - Math.floor((n - 1) / 3);  // 2f+1 for n = 3f+1

function age(t) {
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  return Math.floor(s / 3600) + ' h';
}

function trimFront(arr, max) {
  // Splice in chunks so the cost is amortised over many pushes.
  if (arr.length > max + 100) arr.splice(0, arr.length - max);
}

// ---------------------------------------------------------------- streams

function connect(base, index) {
  const rec = { base, index, es: null, timer: null };
  const open = () => {
    const es = new EventSource(base + '/events');
    rec.es = es;
    es.addEventListener('open', () => {
      // Not "up" until this connection's hello: the node may be restarting.
      const node = nodeOf(rec);
      if (node) { node.open = true; node.up = false; S.dirty = true; }
    });
    es.addEventListener('error', () => {
      const node = nodeOf(rec);
      if (node) { node.open = false; node.up = false; S.dirty = true; }
      // EventSource retries by itself after network errors, but gives up
      // for good on an HTTP error or a wrong content type.
      if (es.readyState === EventSource.CLOSED && !rec.timer) {
        rec.timer = setTimeout(() => { rec.timer = null; open(); }, RECONNECT_MS);
      }
    });
    es.addEventListener('hello', (e) => onHello(rec, parse(e)));
    es.addEventListener('status', (e) => onStatus(rec, parse(e)));
    es.addEventListener('batch', (e) => onBatch(rec, parse(e)));
    es.addEventListener('lagged', (e) => {
      const d = parse(e);
      if (d && Number.isFinite(d.missed)) { S.missed += d.missed; S.dirty = true; }
    });
  };
  open();
  return rec;
}

function parse(e) {
  try { return JSON.parse(e.data); } catch (_) { return null; }
}

const nodeOf = (rec) => (rec.index === null ? null : S.nodes[rec.index] || null);

function onHello(rec, h) {
  if (!h || !Number.isInteger(h.validator_index)) return;
  if (rec.index === null) {
    // Our own origin's first hello sets up the page and the other streams.
    rec.index = h.validator_index;
    if (!S.built) init(h, rec);
  }
  const node = nodeOf(rec);
  if (!node) return;
  node.hello = h;
  node.open = true;
  node.up = true;
  if (node.since === null) node.since = Math.floor(Date.now() / 1000);
  S.dirty = true;
}

function onStatus(rec, st) {
  const node = nodeOf(rec);
  if (!node || !st) return;
  node.status = st;
  S.dirty = true;
}

function onBatch(rec, items) {
  const node = nodeOf(rec);
  if (!node || !Array.isArray(items)) return;
  const rx = Date.now();
  for (const it of items) {
    if (!it || typeof it !== 'object') continue;
    switch (it.type) {
      case 'msg': onMsg(node, it, rx); break;
      case 'block': onBlock(node, it); break;
      case 'finalized': {
        const b = node.blocks.get(it.height);
        if (b) { b.final = true; b.discarded = false; }
        break;
      }
      case 'reverted':
        for (const [h, b] of node.blocks) if (h > it.to) b.discarded = true;
        break;
      case 'timeout':
        if (VIEW_TIMEOUTS.has(it.kind)) {
          S.timeouts.push({ node: node.index, t: it.t, kind: it.kind, view: it.view });
          trimFront(S.timeouts, TIMEOUTS_KEPT);
        }
        break;
      case 'view': onView(node, it); break;
      case 'evidence': onEvidence(node, it); break;
      default: break;
    }
  }
  S.dirty = true;
}

function onMsg(node, m, rx) {
  node.msgs.push({
    t: m.t, rx, from: m.from ?? node.index, to: m.to ?? null, kind: String(m.kind || ''),
    view: m.view, seq: m.seq, digest: m.digest || '',
  });
  trimFront(node.msgs, MSGS_KEPT);
}

function onBlock(node, b) {
  node.blocks.set(b.height, {
    height: b.height, hash: b.hash || '', proposer: b.proposer, txs: b.txs || 0,
    t: b.t, final: !b.tentative, discarded: false,
  });
  if (node.blocks.size > BLOCKS_KEPT + 20) {
    const hs = [...node.blocks.keys()].sort((a, c) => a - c);
    for (const h of hs.slice(0, hs.length - BLOCKS_KEPT)) node.blocks.delete(h);
  }
  const sec = Math.floor(b.t / 1000);
  let r = node.rate.get(sec);
  if (!r) { r = { txs: 0, lat: 0, cnt: 0 }; node.rate.set(sec, r); }
  r.txs += b.txs || 0;
  if (Number.isFinite(b.latency_ms)) { r.lat += b.latency_ms; r.cnt += 1; }
}

function onView(node, v) {
  let e = S.viewEntries.get(v.view);
  if (!e) {
    e = { view: v.view, primary: v.primary, t: v.t, by: new Set() };
    S.viewEntries.set(v.view, e);
    if (S.viewEntries.size > VIEW_CHANGES_KEPT) {
      S.viewEntries.delete(Math.min(...S.viewEntries.keys()));
    }
  }
  e.t = Math.min(e.t, v.t);
  e.by.add(node.index);
}

function onEvidence(node, ev) {
  let e = S.evidence.get(ev.offender);
  if (!e) { e = { t: ev.t, by: new Set() }; S.evidence.set(ev.offender, e); }
  e.by.add(node.index);
}

// The serving node's hello tells us the validator set and where to reach it.
function init(h, selfRec) {
  S.built = true;
  S.hello = h;
  S.selfIndex = h.validator_index;
  S.n = Math.max(h.n || 0, (h.nodes || []).length, h.validator_index + 1);
  S.nodes = Array.from({ length: S.n }, (_, i) => newNode(i));
  for (const nd of h.nodes || []) {
    if (S.nodes[nd.index]) S.nodes[nd.index].api = nd.api || null;
  }
  const me = S.nodes[S.selfIndex];
  me.base = '';
  me.stream = selfRec;
  for (const node of S.nodes) {
    if (node.index === S.selfIndex || !node.api) continue;
    let origin;
    try { origin = new URL(node.api).origin; } catch (_) { continue; }
    if (origin === location.origin) { node.base = ''; continue; }
    node.base = node.api.replace(/\/+$/, '');
    node.stream = connect(node.base, node.index);
  }
  buildValidators();
  buildFlow();
}

// ---------------------------------------------------------------- derived

const upNodes = () => S.nodes.filter((nd) => nd.up);
const upWithStatus = () => S.nodes.filter((nd) => nd.up && nd.status);

// The primary most up nodes name; on a tie, the one named with the highest view.
function currentPrimary() {
  const votes = new Map();
  for (const nd of upWithStatus()) {
    const p = nd.status.primary;
    if (!Number.isInteger(p)) continue;
    const v = votes.get(p) || { count: 0, view: -1 };
    v.count += 1;
    v.view = Math.max(v.view, nd.status.view ?? -1);
    votes.set(p, v);
  }
  let best = null;
  for (const [p, v] of votes) {
    if (!best || v.count > best.count || (v.count === best.count && v.view > best.view)) {
      best = { p, ...v };
    }
  }
  return best ? best.p : null;
}

// Charts and the blocks table follow one node so numbers are not double-counted.
function referenceNode() {
  const me = S.nodes[S.selfIndex];
  if (me && me.up) return me;
  return upNodes()[0] || me || null;
}

// Who says validator i is faulty: faulty_peers of up nodes and evidence.
function accusers(i) {
  const flagged = [];
  for (const nd of upWithStatus()) {
    if (nd.index !== i && (nd.status.faulty_peers || []).includes(i)) flagged.push(nd.index);
  }
  const ev = S.evidence.get(i);
  const evidence = ev ? [...ev.by].filter((j) => j !== i).sort((a, b) => a - b) : [];
  return { flagged, evidence, any: flagged.length + evidence.length > 0 };
}

// Milliseconds an injected pause still lasts (status.paused_until_ms, the
// node's clock; the testnet runs on one machine). Never 0 while the node
// says it is paused, so the row does not flicker to "up" before the next status.
function pausedLeft(st) {
  const until = st && st.paused_until_ms;
  if (!(until > 0)) return 0;
  return Math.max(1, until - Date.now());
}

function isSuspect(i) {
  const nd = S.nodes[i];
  const b = nd && nd.status && nd.status.behaviour;
  return (b && b !== 'honest') || accusers(i).any;
}

// ---------------------------------------------------------------- rendering

function render() {
  if (!S.built || document.hidden) return;
  // A pause's countdown moves without any event.
  if (S.nodes.some((nd) => nd.up && pausedLeft(nd.status))) S.dirty = true;
  if (S.dirty) {
    S.dirty = false;
    renderHeader();
    renderValidators();
    renderViewChanges();
    renderEvidence();
    renderRing();
  }
  // Ages change every second even without new events.
  renderBlocks();
}

function renderHeader() {
  const me = S.nodes[S.selfIndex];
  const st = (me && me.status) || (referenceNode() || {}).status || {};
  setText($('chain-id'), S.hello.chain_id || st.chain_id || '');
  setText($('engine'), 'consensus: ' + (st.consensus || S.hello.consensus || '?'));
  const badge = $('mode');
  const mb = MODE_BADGE[st.mode];
  if (mb) {
    setText(badge, mb[0]);
    setAttr(badge, 'class', 'badge ' + mb[1]);
    badge.hidden = false;
  } else if (st.mode) {
    setText(badge, st.mode);
    setAttr(badge, 'class', 'badge');
    badge.hidden = false;
  } else {
    badge.hidden = true;
  }
  let height = null, fin = null, view = null;
  for (const nd of upWithStatus()) {
    height = Math.max(height ?? -1, nd.status.height ?? -1);
    fin = Math.max(fin ?? -1, nd.status.final_height ?? -1);
    view = Math.max(view ?? -1, nd.status.view ?? -1);
  }
  setText($('height'), height ?? '–');
  setText($('final-height'), fin ?? '–');
  setText($('view'), view ?? '–');
  const p = currentPrimary();
  setText($('primary'), p ?? '–');
  setText($('served-by'), S.selfIndex);
  const streams = S.nodes.filter((nd) => nd.api || nd.index === S.selfIndex).length;
  setText($('streams-up'), upNodes().length + ' of ' + streams);
  setText($('missed'), S.missed);
  const v = st.version || S.hello.version || '';
  setText($('version'), v ? '· Phalanx v' + v + (st.git_commit ? ' (' + short(st.git_commit) + ')' : '') : '');
}

// Validators table: rows are built once, then only their cells change, so
// the fault controls keep their state.
const rows = [];

function buildValidators() {
  const tbody = $('validators').tBodies[0];
  tbody.textContent = '';
  const faults = !!S.hello.allow_fault_injection;
  for (let i = 0; i < S.n; i++) {
    const c = {};
    const td = (name) => (c[name] = el('td', { class: name }));
    const tr = el('tr', { 'data-validator': i, 'data-up': 'false', 'data-primary': 'false' },
      td('index'), td('state'), td('primary'), td('view'), td('height'), td('final'),
      td('peers'), td('behaviour'), td('faulty'), td('mode'));
    c.height.classList.add('num');
    c.final.classList.add('num');
    tbody.append(tr);
    rows[i] = { tr, c };
    if (faults) tbody.append(buildFaultRow(i));
  }
}

function renderValidators() {
  const primary = currentPrimary();
  for (let i = 0; i < S.n; i++) {
    const nd = S.nodes[i];
    const { tr, c } = rows[i];
    const st = nd.status || {};
    const name = st.moniker || (nd.hello && nd.hello.moniker) || '';
    setText(c.index, name ? i + ' · ' + name : String(i));
    let state;
    const paused = nd.up && !st.stopped && pausedLeft(st);
    if (st.stopped && nd.up) state = 'stopped: ' + st.stopped;
    else if (paused) state = 'paused, ' + Math.ceil(paused / 1000) + ' s left';
    else if (nd.up) state = 'up';
    else if (!nd.api && i !== S.selfIndex) state = 'no API';
    else state = 'down';
    setText(c.state, state);
    setAttr(c.state, 'title', state === 'no API'
      ? 'this validator publishes no API address, so the page cannot watch its stream' : '');
    setAttr(c.state, 'class', 'state ' + (st.stopped && nd.up ? 'stopped' : paused ? 'paused' : nd.up ? 'up' : 'down'));
    setAttr(tr, 'data-up', nd.up ? 'true' : 'false');
    setAttr(tr, 'data-primary', primary === i ? 'true' : 'false');
    tr.classList.toggle('is-down', !nd.up);
    setText(c.primary, primary === i ? '★' : '');
    const has = nd.status !== null;
    setText(c.view, has ? (st.view ?? '–') + (st.view_changing ? ' changing' : '') : '–');
    c.view.classList.toggle('changing', !!st.view_changing);
    setText(c.height, has ? st.height ?? '–' : '–');
    setText(c.final, has ? st.final_height ?? '–' : '–');
    const peers = Array.isArray(st.peers) ? st.peers : null;
    setText(c.peers, peers ? peers.length + (peers.length ? ': ' + list(peers) : '') : '–');
    setText(c.behaviour, st.behaviour || '–');
    c.behaviour.classList.toggle('bad', !!st.behaviour && st.behaviour !== 'honest');
    const acc = accusers(i);
    const who = [...new Set([...acc.flagged, ...acc.evidence])].sort((a, b) => a - b);
    setText(c.faulty, acc.any ? '⚑ flagged by ' + list(who) : '');
    const why = [];
    if (acc.flagged.length) why.push('listed in faulty_peers by ' + nodesWord(acc.flagged));
    if (acc.evidence.length) why.push('equivocation evidence recorded by ' + nodesWord(acc.evidence));
    setAttr(c.faulty, 'title', why.join('; '));
    c.faulty.classList.toggle('bad', acc.any);
    setText(c.mode, st.mode || (has ? '–' : ''));
    setAttr(c.mode, 'class', 'mode' + (st.mode ? ' mode-' + st.mode : ''));
  }
}

function renderBlocks() {
  const ref = referenceNode();
  const tbody = $('blocks').tBodies[0];
  setText($('blocks-source'), ref ? 'as stored by node ' + ref.index : '');
  if (!ref || ref.blocks.size === 0) return;
  const finalH = (ref.status && ref.status.final_height) ?? -1;
  const hs = [...ref.blocks.keys()].sort((a, b) => b - a).slice(0, BLOCKS_SHOWN);
  const frag = document.createDocumentFragment();
  for (const h of hs) {
    const b = ref.blocks.get(h);
    const fin = b.discarded ? 'discarded' : (b.final || h <= finalH) ? 'final' : 'tentative';
    frag.append(el('tr', { 'data-height': h, class: fin },
      el('td', { class: 'num height', text: h }),
      el('td', { class: 'hash mono', text: short(b.hash), title: b.hash }),
      el('td', { class: 'proposer', text: b.proposer ?? '' }),
      el('td', { class: 'num txs', text: b.txs }),
      el('td', { class: 'finality', text: fin }),
      el('td', { class: 'num age', text: age(b.t) })));
  }
  tbody.replaceChildren(frag);
}

function renderViewChanges() {
  const ol = $('view-changes');
  const frag = document.createDocumentFragment();
  const pending = pendingViewChange();
  if (pending) frag.append(pending);
  const views = [...S.viewEntries.keys()].sort((a, b) => b - a);
  for (let k = 0; k < views.length; k++) {
    const e = S.viewEntries.get(views[k]);
    const prev = k + 1 < views.length ? views[k + 1] : e.view - 1;
    const li = el('li', { 'data-view': e.view },
      el('strong', { text: 'view ' + e.view }),
      ', primary ' + e.primary + ', at ' + clock(e.t) + ' — ' + viewReason(e, prev));
    li.append(el('span', { class: 'muted', text: ' (entered by ' + list([...e.by].sort()) + ')' }));
    frag.append(li);
  }
  ol.replaceChildren(frag);
  $('view-changes-empty').hidden = ol.childElementCount > 0;
}

// The timeouts that fired in the 10 s before view e was entered, in the views it left.
function viewReason(e, prevView) {
  const groups = new Map();
  for (const t of S.timeouts) {
    if (t.t < e.t - REASON_WINDOW_MS || t.t > e.t + 500) continue;
    if (!(t.view >= prevView && t.view <= e.view)) continue;
    const key = t.kind + '|' + t.view;
    if (!groups.has(key)) groups.set(key, { kind: t.kind, view: t.view, nodes: new Set() });
    groups.get(key).nodes.add(t.node);
  }
  if (groups.size === 0) return 'after VIEW-CHANGE messages';
  const parts = [...groups.values()].map((g) =>
    'a ' + (g.kind === 'progress' ? 'progress' : 'view-change') + ' timeout on ' +
    nodesWord([...g.nodes].sort((a, b) => a - b)) + ' in view ' + g.view);
  return 'after ' + parts.join(' and ');
}

function pendingViewChange() {
  const up = upWithStatus();
  const changing = up.filter((nd) => nd.status.view_changing).map((nd) => nd.index);
  if (up.length === 0 || changing.length * 2 <= up.length) return null;
  // The view asked for: the highest VIEW-CHANGE those nodes sent lately.
  let asked = null;
  const since = Date.now() - 15000;
  for (const i of changing) {
    const msgs = S.nodes[i].msgs;
    for (let k = msgs.length - 1; k >= 0 && msgs[k].rx >= since; k--) {
      if (msgs[k].kind === 'view_change') asked = Math.max(asked ?? -1, msgs[k].view);
    }
  }
  return el('li', { class: 'pending', 'data-pending': 'true' },
    el('strong', { text: 'view change under way' }),
    ': ' + nodesWord(changing) + ' changing view' + (asked !== null ? ', asking for view ' + asked : ''));
}

function renderEvidence() {
  const ul = $('evidence');
  const frag = document.createDocumentFragment();
  const offenders = [...S.evidence.keys()].sort((a, b) => a - b);
  for (const o of offenders) {
    const e = S.evidence.get(o);
    frag.append(el('li', { 'data-offender': o },
      el('strong', { text: 'validator ' + o }),
      ' equivocated — recorded by ' + nodesWord([...e.by].sort((a, b) => a - b)) +
      ' (first at ' + clock(e.t) + ')'));
  }
  ul.replaceChildren(frag);
  $('evidence-empty').hidden = offenders.length > 0;
}

// ---------------------------------------------------------------- charts

function renderCharts() {
  if (!S.built || document.hidden) return;
  const ref = referenceNode();
  setText($('chart-source'), ref ? 'blocks stored by node ' + ref.index : '');
  if (!ref) return;
  const nowSec = Math.floor(Date.now() / 1000);
  const last = nowSec - 1;                       // the last complete second
  const first = last - RATE_WINDOW_S + 1;
  for (const sec of ref.rate.keys()) if (sec < first - 10) ref.rate.delete(sec);
  // Seconds before we connected are unknown, not zero; the first one is partial.
  const start = Math.max(first, ref.since === null ? last : ref.since + 1);

  const tps = [], lat = [];
  for (let s = first; s <= last; s++) {
    if (s < start) { tps.push(null); lat.push(null); continue; }
    let sum = 0, k = 0;
    for (let j = s - 4; j <= s; j++) {
      if (j < start) continue;
      const r = ref.rate.get(j);
      sum += r ? r.txs : 0;
      k += 1;
    }
    tps.push(k ? sum / k : null);
    const r = ref.rate.get(s);
    lat.push(r && r.cnt ? r.lat / r.cnt : null);
  }
  const curTps = tps[tps.length - 1];
  let ls = 0, lc = 0;
  for (let j = last - 4; j <= last; j++) {
    const r = ref.rate.get(j);
    if (r) { ls += r.lat; lc += r.cnt; }
  }
  setText($('tps'), curTps === null ? '–' : fmt(curTps));
  setText($('latency'), lc ? fmt(ls / lc) : '–');
  drawChart($('tps-chart'), tps, 'tps', true);
  drawChart($('latency-chart'), lat, 'latency', false);
}

function fmt(x) {
  return x >= 100 ? String(Math.round(x)) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// A line chart over the last 5 minutes, one point per second; null is a gap.
function drawChart(svgEl, values, cls, area) {
  const W = 360, H = 130, L = 38, R = 6, T = 8, B = 20;
  const max = niceMax(Math.max(0, ...values.filter((v) => v !== null)));
  const x = (i) => L + (i / (values.length - 1)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const frag = document.createDocumentFragment();
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    frag.append(svg('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'grid' }));
    const v = max * f;
    frag.append(svg('text', { x: L - 4, y: yy + 3, class: 'axis', 'text-anchor': 'end', text: Number.isInteger(v) ? v : fmt(v) }));
  }
  const ticks = [[0, '−5 min'], [0.5, '−2.5 min'], [1, 'now']];
  for (const [f, label] of ticks) {
    frag.append(svg('text', {
      x: L + f * (W - L - R), y: H - 5, class: 'axis',
      'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle', text: label,
    }));
  }
  // Runs of consecutive values become path segments.
  let d = '', fill = '', runStart = -1;
  const closeRun = (endI) => {
    if (runStart >= 0 && area) fill += 'L' + x(endI).toFixed(1) + ',' + y(0).toFixed(1) + 'L' + x(runStart).toFixed(1) + ',' + y(0).toFixed(1) + 'Z';
    runStart = -1;
  };
  values.forEach((v, i) => {
    if (v === null) { closeRun(i - 1); return; }
    const pt = x(i).toFixed(1) + ',' + y(v).toFixed(1);
    if (runStart < 0) { runStart = i; d += 'M' + pt; fill += 'M' + pt; } else { d += 'L' + pt; fill += 'L' + pt; }
  });
  closeRun(values.length - 1);
  if (area && fill) frag.append(svg('path', { d: fill, class: 'area ' + cls }));
  if (d) frag.append(svg('path', { d, class: 'line ' + cls }));
  else frag.append(svg('text', { x: (L + W) / 2, y: H / 2, class: 'axis', 'text-anchor': 'middle', text: 'no blocks yet' }));
  svgEl.replaceChildren(frag);
}

// ---------------------------------------------------------------- fault controls

function buildFaultRow(i) {
  const node = S.nodes[i];
  const result = el('span', { class: 'fault-result', 'aria-live': 'polite' });
  const select = el('select', { class: 'behaviour-select', 'data-validator': i, 'aria-label': 'behaviour of validator ' + i });
  for (const b of BEHAVIOURS) select.append(el('option', { value: b, text: b }));
  const others = () => [...Array(S.n).keys()].filter((j) => j !== i);
  // data-validator on each control lets tests and scripts find "validator i's pause".
  const btn = (label, cls, fn) => {
    const b = el('button', { type: 'button', class: cls, text: label, 'data-validator': i });
    b.addEventListener('click', fn);
    return b;
  };
  const send = (route, body) => post(node, route, body, result);
  const controls = el('div', { class: 'fault-controls' },
    el('span', { class: 'fault-label', text: 'faults for ' + i + ':' }),
    select,
    btn('apply', 'apply', () => send('/admin/behaviour', { behaviour: select.value })),
    btn('partition', 'partition', () => send('/admin/partition', { blocked: others() })),
    btn('heal', 'heal', () => send('/admin/partition', { blocked: [] })),
    btn('pause 10 s', 'pause', () => send('/admin/pause', { ms: 10000 })),
    btn('stop', 'stop', () => {
      if (confirm('Stop validator ' + i + '? It will not come back until restarted by hand.')) {
        send('/admin/stop', {});
      }
    }),
    result);
  const reachable = node.base !== null || i === S.selfIndex || !!node.api;
  if (!reachable) {
    for (const c of controls.querySelectorAll('button, select')) c.disabled = true;
    result.textContent = 'no API address for this validator';
  }
  return el('tr', { class: 'fault-row', 'data-faults-for': i }, el('td', { colspan: 10 }, controls));
}

async function post(node, route, body, out) {
  const base = node.index === S.selfIndex ? '' : (node.base ?? node.api ?? '').replace(/\/+$/, '');
  out.className = 'fault-result busy';
  out.textContent = 'sending…';
  try {
    const res = await fetch(base + route, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (res.ok) {
      out.className = 'fault-result ok';
      out.textContent = 'done';
      return;
    }
    let msg = 'HTTP ' + res.status;
    try {
      const j = await res.json();
      if (j && j.message) msg = j.message + (j.code ? ' (' + j.code + ')' : '');
    } catch (_) { /* not JSON: keep the status line */ }
    out.className = 'fault-result err';
    out.textContent = msg;
  } catch (err) {
    // fetch rejects without detail on network and CORS failures.
    out.className = 'fault-result err';
    out.textContent = 'could not reach the node (down, or the request was refused by CORS)';
  }
}

// ---------------------------------------------------------------- message flow

const F = {
  paused: false,
  follow: true,
  speed: 1,
  group: null,        // the group being (or last) replayed
  plan: null,         // {dots, phases, total}
  elapsed: 0,         // replay clock, ms at speed ×1
  running: false,
  lastFrame: 0,
  nextAt: 0,
  lastVcView: -1,     // newest view-change group already shown
  activePhase: -1,
  pos: [],            // node centres
  layers: null,
};

const RING = { cx: 220, cy: 148, r: 110, node: 24 };

function buildFlow() {
  const root = $('flow-svg');
  root.textContent = '';
  F.pos = [];
  for (let i = 0; i < S.n; i++) {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / S.n;
    F.pos.push({ x: RING.cx + RING.r * Math.cos(a), y: RING.cy + RING.r * Math.sin(a) });
  }
  const edges = svg('g', { class: 'edges' });
  for (let i = 0; i < S.n; i++) for (let j = i + 1; j < S.n; j++) {
    edges.append(svg('line', { x1: F.pos[i].x, y1: F.pos[i].y, x2: F.pos[j].x, y2: F.pos[j].y }));
  }
  const trails = svg('g', { class: 'trails' });
  const dots = svg('g', { class: 'dots' });
  const nodes = svg('g', { class: 'ring-nodes' });
  F.ringNodes = [];
  for (let i = 0; i < S.n; i++) {
    const g = svg('g', { class: 'ring-node', 'data-node': i });
    g.append(svg('circle', { cx: F.pos[i].x, cy: F.pos[i].y, r: RING.node }));
    g.append(svg('text', { x: F.pos[i].x, y: F.pos[i].y + 5, 'text-anchor': 'middle', class: 'idx', text: i }));
    const star = svg('text', { x: F.pos[i].x + RING.node - 2, y: F.pos[i].y - RING.node + 8, 'text-anchor': 'middle', class: 'star', text: '' });
    g.append(star);
    const sub = svg('text', { x: F.pos[i].x, y: F.pos[i].y + RING.node + 14, 'text-anchor': 'middle', class: 'sub', text: '' });
    g.append(sub);
    nodes.append(g);
    F.ringNodes.push({ g, star, sub });
  }
  const phase = svg('text', { x: 8, y: 20, class: 'phase-label', text: '' });
  root.append(edges, trails, dots, nodes, phase);
  F.layers = { trails, dots, phase };

  $('flow-pause').addEventListener('click', () => {
    F.paused = !F.paused;
    setText($('flow-pause'), F.paused ? 'resume' : 'pause');
    $('flow-pause').classList.toggle('on', F.paused);
    if (!F.paused) startFrames();
  });
  const speedBy = (d) => {
    const k = Math.min(SPEEDS.length - 1, Math.max(0, SPEEDS.indexOf(F.speed) + d));
    F.speed = SPEEDS[k];
    setText($('flow-speed'), 'speed ×' + F.speed);
  };
  $('flow-slower').addEventListener('click', () => speedBy(-1));
  $('flow-faster').addEventListener('click', () => speedBy(1));
  $('flow-prev').addEventListener('click', () => step(-1));
  $('flow-next').addEventListener('click', () => step(1));
  $('flow-follow').addEventListener('click', () => {
    F.follow = true;
    updateFollowButton();
    F.nextAt = 0;
  });
}

function updateFollowButton() {
  $('flow-follow').classList.toggle('on', F.follow);
  setText($('flow-follow'), F.follow ? 'following newest' : 'follow newest');
}

function renderRing() {
  if (!F.ringNodes) return;
  const primary = currentPrimary();
  for (let i = 0; i < S.n; i++) {
    const nd = S.nodes[i];
    const r = F.ringNodes[i];
    r.g.classList.toggle('down', !nd.up);
    r.g.classList.toggle('suspect', isSuspect(i));
    r.g.classList.toggle('primary', primary === i);
    setText(r.star, primary === i ? '★' : '');
    const b = nd.status && nd.status.behaviour;
    const st = nd.status || {};
    setText(r.sub, !nd.up ? 'down' : st.stopped ? 'stopped' : pausedLeft(st) ? 'paused'
      : b && b !== 'honest' ? b : '');
  }
}

// Every group of messages currently in the buffers, keyed so that groups sort
// in protocol order: a view change to v comes before v's slots.
function collectGroups() {
  const groups = new Map();
  const add = (key, type, view, seq, m) => {
    let g = groups.get(key);
    if (!g) { g = { key, type, view, seq, msgs: [], lastRx: 0 }; groups.set(key, g); }
    g.msgs.push(m);
    g.lastRx = Math.max(g.lastRx, m.rx);
  };
  let pbft = false;
  for (const nd of S.nodes) for (const m of nd.msgs) {
    if (SLOT_KINDS.has(m.kind) || m.kind === 'complaint' || m.kind === 'evidence') {
      if (!Number.isFinite(m.view) || !Number.isFinite(m.seq)) continue;
      if (SLOT_KINDS.has(m.kind)) pbft = true;
      add('s:' + m.view + ':' + m.seq, 'slot', m.view, m.seq, m);
    } else if (VC_KINDS.has(m.kind)) {
      if (!Number.isFinite(m.view)) continue;
      pbft = true;
      add('v:' + m.view, 'vc', m.view, -1, m);
    }
  }
  // Complaints and evidence alone do not make a slot worth replaying.
  for (const [k, g] of groups) {
    if (g.type === 'slot' && !g.msgs.some((m) => SLOT_KINDS.has(m.kind))) groups.delete(k);
  }
  if (!pbft) addWindowGroup(groups);
  return [...groups.values()].sort((a, b) => a.view - b.view || a.seq - b.seq);
}

// Engines without PBFT slots: replay the newest complete second of messages.
function addWindowGroup(groups) {
  const cutoff = Date.now() - REPLAY_SETTLE_MS;
  let newest = -Infinity;
  for (const nd of S.nodes) for (const m of nd.msgs) if (m.rx <= cutoff) newest = Math.max(newest, m.t);
  if (!Number.isFinite(newest)) return;
  const sec = Math.floor(newest / 1000);
  const msgs = [];
  for (const nd of S.nodes) for (const m of nd.msgs) {
    if (Math.floor(m.t / 1000) === sec && msgs.length < 60) msgs.push(m);
  }
  groups.set('w:' + sec, { key: 'w:' + sec, type: 'window', view: sec, seq: 0, msgs, lastRx: 0 });
}

const commitSenders = (g) => new Set(g.msgs.filter((m) => m.kind === 'commit').map((m) => m.from)).size;

function pickNewest(groups) {
  const now = Date.now();
  // A view change not yet shown goes first, once it has settled.
  for (let k = groups.length - 1; k >= 0; k--) {
    const g = groups[k];
    if (g.type !== 'vc' || g.view <= F.lastVcView) continue;
    if (S.viewEntries.has(g.view) || now - g.lastRx > VC_SETTLE_MS) return g;
  }
  let fallback = null;
  for (let k = groups.length - 1; k >= 0; k--) {
    const g = groups[k];
    if (g.type === 'window') return g;
    if (g.type !== 'slot' || commitSenders(g) < 2) continue;
    if (now - g.lastRx >= REPLAY_SETTLE_MS) return g;
    if (!fallback) fallback = g;
  }
  return fallback;
}

function step(dir) {
  const groups = collectGroups();
  if (groups.length === 0) return;
  F.follow = false;
  updateFollowButton();
  let k;
  if (!F.group) k = groups.length - 1;
  else {
    const cur = F.group;
    const cmp = (g) => g.view - cur.view || g.seq - cur.seq;
    if (dir < 0) {
      k = -1;
      for (let j = groups.length - 1; j >= 0; j--) if (cmp(groups[j]) < 0 && replayable(groups[j])) { k = j; break; }
    } else {
      k = -1;
      for (let j = 0; j < groups.length; j++) if (cmp(groups[j]) > 0 && replayable(groups[j])) { k = j; break; }
    }
    if (k < 0) {
      if (dir > 0) { F.follow = true; updateFollowButton(); F.nextAt = 0; return; }
      return;  // nothing older in the buffers
    }
  }
  startReplay(snapshot(groups[k]));
}

const replayable = (g) => g.type !== 'slot' || g.msgs.some((m) => m.kind === 'pre_prepare' || m.kind === 'commit');

// Copy the group so it stays replayable after the buffers move on.
function snapshot(g) {
  return { ...g, msgs: g.msgs.slice().sort((a, b) => a.t - b.t) };
}

function tick() {
  if (!S.built || F.paused || F.running || Date.now() < F.nextAt) return;
  let g = F.group;
  if (F.follow || !g) {
    const picked = pickNewest(collectGroups());
    if (picked) g = snapshot(picked);
  }
  if (g) startReplay(g);
}

// Conflicts inside a group: one sender with two digests for a kind, or a
// digest that differs from what most senders of that kind used.
function findConflicts(g) {
  const byKind = new Map();
  for (const m of g.msgs) {
    if (!m.digest) continue;
    if (!byKind.has(m.kind)) byKind.set(m.kind, new Map());
    const senders = byKind.get(m.kind);
    if (!senders.has(m.from)) senders.set(m.from, new Set());
    senders.get(m.from).add(m.digest);
  }
  const bad = new Set();     // "kind|from|digest"
  const notes = [];
  for (const [kind, senders] of byKind) {
    const count = new Map();
    for (const ds of senders.values()) for (const d of ds) count.set(d, (count.get(d) || 0) + 1);
    const ranked = [...count.entries()].sort((a, b) => b[1] - a[1]);
    const majority = senders.size >= 2 && ranked.length > 0 && (ranked.length === 1 || ranked[0][1] > ranked[1][1])
      ? ranked[0][0] : null;
    for (const [from, ds] of senders) {
      if (ds.size > 1) {
        for (const d of ds) bad.add(kind + '|' + from + '|' + d);
        notes.push('node ' + from + ' sent ' + kindLabel(kind) + ' with ' + ds.size + ' different digests: ' + list([...ds]));
      } else if (majority !== null) {
        const d = [...ds][0];
        if (d !== majority) {
          bad.add(kind + '|' + from + '|' + d);
          notes.push('node ' + from + ' sent ' + kindLabel(kind) + ' with digest ' + d + ', the others ' + majority);
        }
      }
    }
  }
  return { bad, notes };
}

function startReplay(g) {
  F.group = g;
  if (g.type === 'vc') F.lastVcView = Math.max(F.lastVcView, g.view);
  const plan = planReplay(g);
  F.plan = plan;
  F.elapsed = 0;
  F.activePhase = -1;
  F.running = true;
  F.nextAt = Date.now() + Math.max(REPLAY_EVERY_MS, plan.total / F.speed + 1000);
  drawReplay(plan);
  renderCaption(g, plan);
  startFrames();
}

// Spread the group's phases evenly over ~4 s; inside a phase keep the real
// order of sending, compressed into the first part of the phase.
function planReplay(g) {
  const conflicts = findConflicts(g);
  const phaseKey = (m) => (m.kind in PHASE_ORDER ? PHASE_ORDER[m.kind] : 10) + '|' + m.kind;
  const phaseMap = new Map();
  for (const m of g.msgs) {
    const k = phaseKey(m);
    if (!phaseMap.has(k)) phaseMap.set(k, { kind: m.kind, order: PHASE_ORDER[m.kind] ?? 10, msgs: [], minT: m.t, maxT: m.t });
    const p = phaseMap.get(k);
    p.msgs.push(m);
    p.minT = Math.min(p.minT, m.t);
    p.maxT = Math.max(p.maxT, m.t);
  }
  const phases = [...phaseMap.values()].sort((a, b) => a.order - b.order || a.minT - b.minT);
  const P = REPLAY_BASE_MS / Math.max(1, phases.length);
  const dots = [];
  phases.forEach((p, pi) => {
    p.start = pi * P;
    p.end = p.start + P;
    const spread = p.maxT - p.minT;
    for (const m of p.msgs) {
      const start = p.start + (spread > 0 ? ((m.t - p.minT) / spread) * P * 0.3 : 0);
      const targets = m.to === null || m.to === undefined
        ? [...Array(S.n).keys()].filter((j) => j !== m.from)
        : [m.to];
      const conflict = conflicts.bad.has(m.kind + '|' + m.from + '|' + m.digest);
      for (const to of targets) {
        if (!F.pos[m.from] || !F.pos[to]) continue;
        dots.push({ m, to, start, dur: P * 0.6, conflict });
      }
    }
  });
  return { phases, dots, total: REPLAY_BASE_MS + 700, conflicts };
}

function drawReplay(plan) {
  const { trails, dots } = F.layers;
  trails.textContent = '';
  dots.textContent = '';
  for (const d of plan.dots) {
    const a = F.pos[d.m.from], b = F.pos[d.to];
    // Offset to the right of travel so i→j and j→i do not overlap.
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
    const ox = (-dy / len) * 5, oy = (dx / len) * 5;
    d.x1 = a.x + ox; d.y1 = a.y + oy; d.x2 = b.x + ox; d.y2 = b.y + oy;
    if (d.conflict) {
      d.trail = svg('line', { x1: d.x1, y1: d.y1, x2: d.x2, y2: d.y2, class: 'trail conflict' });
      d.trail.setAttribute('visibility', 'hidden');
      trails.append(d.trail);
    }
    d.el = svg('circle', { r: d.conflict ? 7.5 : 6.5, cx: d.x1, cy: d.y1, class: 'dot ' + kindClass(d.m.kind) + (d.conflict ? ' conflict' : '') });
    d.el.setAttribute('visibility', 'hidden');
    dots.append(d.el);
  }
}

function renderCaption(g, plan) {
  const cap = $('flow-caption');
  const parts = [];
  let head;
  if (g.type === 'slot') head = 'view ' + g.view + ', sequence ' + g.seq + ': ';
  else if (g.type === 'vc') head = 'view change to view ' + g.view + ': ';
  else head = 'messages sent at ' + clock(g.view * 1000) + ': ';
  plan.phases.forEach((p, i) => {
    const senders = [...new Set(p.msgs.map((m) => m.from))].sort((a, b) => a - b);
    parts.push(el('span', { class: 'phase ' + kindClass(p.kind), 'data-phase': i },
      kindLabel(p.kind) + ' from ' + list(senders)));
  });
  let outcome = null;
  if (g.type === 'slot') {
    const c = commitSenders(g), q = quorum(S.n);
    outcome = c >= q ? 'committed' : 'COMMIT from ' + c + ' of ' + S.n + ' (a quorum is ' + q + ')';
  } else if (g.type === 'vc') {
    const e = S.viewEntries.get(g.view);
    if (e) outcome = 'primary ' + e.primary + ' took over';
    else if (!g.msgs.some((m) => m.kind === 'new_view')) outcome = 'no NEW-VIEW: this view change did not complete';
  }
  const frag = document.createDocumentFragment();
  frag.append(head);
  parts.forEach((p, i) => { if (i) frag.append(' → '); frag.append(p); });
  if (outcome) frag.append(' → ', el('span', { class: 'phase outcome', 'data-phase': parts.length, text: outcome }));
  if (!F.follow) frag.append(el('span', { class: 'muted', text: '  (stepped back; press “follow newest” to go live)' }));
  cap.replaceChildren(frag);
  const ul = $('flow-conflicts');
  ul.replaceChildren(...plan.conflicts.notes.map((t) => el('li', { text: t })));
}

function startFrames() {
  if (!F.running || F.paused || F.raf) return;
  F.lastFrame = performance.now();
  F.raf = requestAnimationFrame(frame);
}

// About 30 frames a second are plenty for dots this slow, and half of
// 60 on the machine that also runs the testnet.
const FRAME_MS = 32;

function frame(now) {
  F.raf = 0;
  if (F.paused || !F.plan) return;
  if (now - F.lastFrame < FRAME_MS) {
    F.raf = requestAnimationFrame(frame);
    return;
  }
  const dt = Math.min(100, now - F.lastFrame);  // a hidden tab must not jump ahead
  F.lastFrame = now;
  F.elapsed += dt * F.speed;
  const plan = F.plan;
  for (const d of plan.dots) {
    const p = (F.elapsed - d.start) / d.dur;
    const show = p >= 0 && p <= 1;
    // Touch the DOM only when something changes.
    if (d.shown !== show) {
      d.shown = show;
      d.el.setAttribute('visibility', show ? 'visible' : 'hidden');
      if (d.trail) d.trail.setAttribute('visibility', show ? 'visible' : 'hidden');
    }
    if (!show) continue;
    const e = p < 0.5 ? 2 * p * p : 1 - 2 * (1 - p) * (1 - p);   // ease in and out
    d.el.setAttribute('cx', (d.x1 + (d.x2 - d.x1) * e).toFixed(1));
    d.el.setAttribute('cy', (d.y1 + (d.y2 - d.y1) * e).toFixed(1));
  }
  let active = plan.phases.findIndex((p) => F.elapsed >= p.start && F.elapsed < p.end);
  if (active < 0 && F.elapsed >= REPLAY_BASE_MS) active = plan.phases.length;  // the outcome
  if (active !== F.activePhase) setActivePhase(active, plan);
  if (F.elapsed >= plan.total) {
    F.running = false;
    return;
  }
  F.raf = requestAnimationFrame(frame);
}

function setActivePhase(k, plan) {
  F.activePhase = k;
  for (const s of $('flow-caption').querySelectorAll('.phase')) {
    s.classList.toggle('active', Number(s.dataset.phase) === k);
  }
  const p = plan.phases[k];
  setText(F.layers.phase, p ? kindLabel(p.kind) : '');
  setAttr(F.layers.phase, 'class', 'phase-label ' + (p ? kindClass(p.kind) : ''));
}

// ---------------------------------------------------------------- start

function start() {
  connect('', null);
  setInterval(render, RENDER_MS);
  setInterval(renderCharts, CHART_MS);
  setInterval(tick, 250);
  document.addEventListener('visibilitychange', () => { S.dirty = true; });
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();

})();
