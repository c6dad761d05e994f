/* The traffic view: the messages of the watched room or client, as
 * they pass, with pause, clear, the text/hex views, the CRC check and
 * saving. One message's element is traffic-item.js's; what is watched
 * is watch.js's. Client data reaches the page through textContent and
 * attributes only.
 *
 * Items live in T.items (at most MAX_ITEMS, oldest dropped). The list
 * is virtualised with variable row heights: each item's height is
 * estimated, then measured once it has been on screen; positions are
 * prefix sums. When the user scrolls up, the view stays anchored to
 * the item at the top while new items arrive and old ones are dropped;
 * at the bottom it follows the newest item.
 *
 * A watch of a room begins with the last messages the room keeps
 * (--history), fetched by watch.js and placed here by addHistory: before
 * the watch's mark, tagged as history, not counted in the rate. */

import { $, el, setText, setTitle, storage, toast } from './dom.js';
import { fmtInt, fmtRate, fmtDateTime, pad2, plural, visible, recordBytes, bytesToBase64 } from './format.js';
import { state, register, invalidate, onNextFrame } from './state.js';
import { onLive } from './live.js';
import { roomsTable } from './tables.js';
import { buildItem, estimate, hexDump } from './traffic-item.js';

const MAX_ITEMS = 5000;
const MAX_HELD = 48 * 1024 * 1024;   // also cap the text kept, for 16 KiB payloads
const OVERSCAN = 400;                // px rendered above and below the viewport
const FEED_SHOWN = 16 * 1024;        // the feed sends a message's first 16 KiB (SHOWN_BYTES in live.rs)
const REPEAT_MS = 50;                // a kept and a live copy of one message are stamped this close

const T = {
  el: $('#traffic'),
  sizer: $('#traffic-sizer'),
  items: [],
  pending: [],          // arrived while paused
  held: 0,
  seq: 0,
  droppedServer: 0,
  droppedLocal: 0,
  droppedPaused: 0,
  paused: false,
  follow: true,
  newBelow: 0,
  view: 'both',
  nodes: new Map(),     // seq -> mounted element
  tops: [],
  seqs: [],
  total: 0,
  anchor: null,         // {seq, delta} when not following
  width: 0,
  charW: 7.5,
  cpl: 100,             // characters per line, for estimates
  hexRow: 16,           // bytes a hex dump line: 8 where 16 do not fit (phones)
  height: 0,            // the list's height, set to fit its messages
  arrivals: 0,
  rate: 0,
  watchStart: null,     // {text, first}: where the current watch begins (markWatch)
  repeats: null,        // {room, kept, until}: history that the feed may still repeat
  skip: null,           // Set of offsets shown as missed while the feed was down (addMissed), not to show again
};

function recordSize(r) { return (r.b64 ? r.b64.length : 0) + (r.text ? r.text.length * 2 : 0) + 200; }

/** A record of the list from one item of the feed (or one kept message
 * in the same shape: keptAsItem). Its seq is set where it is placed. */
function toRecord(it) {
  const r = {
    seq: 0,
    at: Number(it.at) || Date.now(),
    room: it.room == null ? null : String(it.room),
    from: it.from == null ? '' : String(it.from),
    fromId: it.from_id,
    to: it.to == null ? null : String(it.to),
    size: Number(it.size) || 0,
    b64: typeof it.bytes === 'string' ? it.bytes : '',
    text: typeof it.text === 'string' ? it.text : null,
    offset: typeof it.offset === 'string' ? it.offset : null,
    h: 0,
    open: false,
  };
  r.weight = recordSize(r);
  return r;
}

function trafficAdd(list, dropped) {
  T.droppedServer += dropped;
  T.arrivals += list.length + dropped;
  const target = T.paused ? T.pending : T.items;
  for (const it of list) {
    const r = toRecord(it);
    if (r.offset && T.skip && T.skip.delete(r.offset)) continue; // shown already, as missed
    if (r.offset && state.watch && state.watch.room === r.room) state.watch.lastOffset = r.offset;
    r.seq = ++T.seq;
    if (T.repeats) dropRepeat(r);
    if (T.watchStart && !T.watchStart.first) T.watchStart.first = r;
    T.held += r.weight;
    target.push(r);
  }
  if (!T.follow && !T.paused) T.newBelow += list.length;
  trimTraffic();
  invalidate('traffic');
}
onLive('traffic', trafficAdd);

/** Keeps items + pending within MAX_ITEMS and MAX_HELD. While paused the
 * frozen view is kept and the oldest buffered arrivals go first. */
function trimTraffic() {
  const over = (dropItems, dropPending) =>
    T.items.length - dropItems + T.pending.length - dropPending > MAX_ITEMS || T.held > MAX_HELD;
  let n = 0;
  while (n < T.pending.length && over(0, n)) { T.held -= T.pending[n].weight; n++; }
  if (n) { T.pending.splice(0, n); T.droppedPaused += n; T.droppedLocal += n; }
  let m = 0;
  while (m < T.items.length && over(m, 0)) { T.held -= T.items[m].weight; m++; }
  if (m) { T.items.splice(0, m); T.droppedLocal += m; }
}

/** A mark's record; its seq is set where it is placed. */
function markRecord(text) { return { seq: 0, mark: true, text, at: Date.now(), h: 0, weight: 100 }; }

/** A line between messages: "watching #lobby", "stopped watching".
 * None on an empty list; returns the record, or null. */
export function addMark(text) {
  if (!T.items.length && !T.pending.length) return null;
  const r = markRecord(text);
  r.seq = ++T.seq;
  (T.paused ? T.pending : T.items).push(r);
  T.held += r.weight;
  trimTraffic();
  invalidate('traffic');
  return r;
}

/** A new watch: its mark, and a handle on where the watch begins in the
 * list (its mark, or its first message when the list was empty), which
 * addHistory places the room's earlier messages before. */
export function markWatch(text) {
  T.watchStart = { text, first: addMark(text) };
  T.repeats = null;
  T.skip = null;
  return T.watchStart;
}

/* ---------- a room's history, shown when its watch begins ---------- */

const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A kept message of GET /api/v1/rooms/{room}/history in the shape of
 * an item of the feed, so that it is shown the same way: its first
 * FEED_SHOWN bytes as `text` when they are UTF-8, else in base64 as
 * `bytes`, and its whole size. (The API sends `text` always, invalid
 * bytes replaced, and the exact `bytes` when they are not UTF-8.) */
function keptAsItem(m, room) {
  const exact = typeof m.bytes === 'string';
  const text = typeof m.text === 'string' ? m.text : '';
  const bytes = recordBytes(exact ? { b64: m.bytes } : { text });
  const item = { at: m.at, room, from: m.from, from_id: null, to: null, size: bytes.length, text: exact ? null : text,
    offset: typeof m.offset === 'string' ? m.offset : null };
  if (exact) item.bytes = m.bytes;
  if (bytes.length > FEED_SHOWN) {
    const shown = bytes.subarray(0, FEED_SHOWN);
    try { item.text = UTF8_STRICT.decode(shown); delete item.bytes; } catch (e) { item.text = null; item.bytes = bytesToBase64(shown); }
  }
  return item;
}

/** Whether a live record and a kept one are one message: the server
 * stamps both when it is said, so they differ by a few milliseconds. */
function sameMessage(live, kept) {
  return Math.abs(live.at - kept.at) <= REPEAT_MS && live.from === kept.from && live.size === kept.size &&
    live.text === kept.text && live.b64 === kept.b64;
}

/** Where a record is: {list, i}, or null when it is gone (cleared, trimmed). */
function placeOf(r) {
  let i = T.items.indexOf(r);
  if (i >= 0) return { list: T.items, i };
  i = T.pending.indexOf(r);
  return i >= 0 ? { list: T.pending, i } : null;
}

/** Drops kept messages already shown live: what was said between the
 * start of the watch and the reading of the history is in both. The
 * rest may still come live (repeats, for dropRepeat). */
function withoutShown(kept, place, room) {
  const until = kept[kept.length - 1].at + REPEAT_MS;
  if (place) {
    const live = place.list === T.items ? T.items.slice(place.i).concat(T.pending) : T.pending.slice(place.i);
    for (const r of live) {
      if (r.mark || r.history || r.at > until || r.room !== room) continue;
      const k = kept.findIndex((h) => sameMessage(r, h));
      if (k >= 0) kept.splice(k, 1);
    }
  }
  T.repeats = kept.length ? { room, kept: kept.slice(), until } : null;
  return kept;
}

/** A live message the history already shows (it came after the history
 * was read): the history's copy goes, so history is what was said
 * before the watch and the live traffic stays whole. */
function dropRepeat(r) {
  const o = T.repeats;
  if (r.at > o.until) { T.repeats = null; return; }
  if (r.room !== o.room) return;
  const k = o.kept.findIndex((h) => sameMessage(r, h));
  if (k < 0) return;
  const h = o.kept.splice(k, 1)[0];
  const place = placeOf(h);
  if (place) { place.list.splice(place.i, 1); T.held -= h.weight; }
  const node = T.nodes.get(h.seq);
  if (node) { node.remove(); T.nodes.delete(h.seq); }
}

/** Puts records before the one at `place` (at the end when null), with
 * seqs between its neighbours' so the list stays in seq order and
 * nothing built or anchored is renumbered. */
function insertBefore(place, recs) {
  if (!place) {
    const list = T.paused ? T.pending : T.items;
    for (const r of recs) { r.seq = ++T.seq; list.push(r); }
  } else {
    const { list, i } = place;
    const prev = i > 0 ? list[i - 1] : list === T.pending && T.items.length ? T.items[T.items.length - 1] : null;
    const lo = prev ? prev.seq : list[i].seq - 1;
    const step = (list[i].seq - lo) / (recs.length + 1);
    recs.forEach((r, k) => { r.seq = lo + step * (k + 1); });
    list.splice(i, 0, ...recs);
  }
  for (const r of recs) T.held += r.weight;
}

/** Shows a room's kept messages (oldest first) where its watch `start`
 * (markWatch) begins: before its mark; when the list was empty, before
 * its first message, with the mark after them. Tagged as history, and
 * not counted in the rate: they did not just pass. One insert, one
 * render. Returns how many are shown. */
export function addHistory(start, room, messages) {
  if (start !== T.watchStart) return 0;                // another watch began since
  const place = start.first ? placeOf(start.first) : null;
  if (start.first && !place) return 0;                 // cleared since: nothing to put them before
  let kept = [];
  for (const m of messages) {
    if (!m || typeof m !== 'object') continue;
    const r = toRecord(keptAsItem(m, room));
    r.history = true;
    kept.push(r);
  }
  if (!kept.length) return 0;
  kept = withoutShown(kept, place, room);
  if (!kept.length) return 0;
  const recs = start.first && start.first.mark ? kept : kept.concat(markRecord(start.text));
  insertBefore(place, recs);
  trimTraffic();
  invalidate('traffic');
  return kept.length;
}

/** The feed is back after a drop while a room was watched: a mark where
 * live traffic resumes, which addMissed puts what was missed before. */
export function markBack() {
  return addMark('back on the live feed');
}

/** Shows what the watched room said while the feed was down (kept
 * messages after the last one shown, oldest first), before the mark
 * `back` (markBack): under a mark saying so, and `lost` when the room
 * no longer had all of it. Messages the feed has shown since it came
 * back are not shown twice, nor are those it may still repeat (T.skip).
 * Returns how many are shown. */
export function addMissed(back, room, messages, lost) {
  const place = back ? placeOf(back) : null;
  if (back && !place) return 0;                        // cleared since
  const shown = new Set();
  if (place) {
    const live = place.list === T.items ? T.items.slice(place.i).concat(T.pending) : T.pending.slice(place.i);
    for (const r of live) if (r.offset) shown.add(r.offset);
  }
  const recs = [];
  for (const m of messages) {
    if (!m || typeof m !== 'object' || shown.has(m.offset)) continue;
    const r = toRecord(keptAsItem(m, room));
    r.history = true;
    recs.push(r);
  }
  if (!recs.length && !lost) return 0;
  T.skip = new Set(recs.map((r) => r.offset).filter(Boolean));
  const said = recs.length ? plural(recs.length, 'message') + ' said in #' + visible(room) + ' while disconnected' : '';
  const head = markRecord(lost ? [lost, said].filter(Boolean).join('; then ') : said);
  insertBefore(place, [head, ...recs]);
  trimTraffic();
  invalidate('traffic');
  return recs.length;
}

/** A new watch: the rate in the bar counts from zero. */
export function resetRate() {
  T.rate = 0;
  T.arrivals = 0;
}

function setPaused(p) {
  T.paused = p;
  const btn = $('#traffic-pause');
  btn.setAttribute('aria-pressed', String(p));
  btn.textContent = p ? 'Resume' : 'Pause';
  if (!p) {
    if (T.droppedPaused) {
      T.items.push({ seq: ++T.seq, mark: true, text: fmtInt(T.droppedPaused) + ' messages dropped while paused', at: Date.now(), h: 0, weight: 100 });
      T.held += 100;
      T.droppedPaused = 0;
    }
    // Pending records got their seq on arrival; the mark must sort before them.
    for (const r of T.pending) { r.seq = ++T.seq; T.items.push(r); }
    T.pending = [];
    T.follow = true;
    T.newBelow = 0;
    trimTraffic();
  }
  invalidate('traffic');
  invalidate('trafficBar');
}

function clearTraffic() {
  for (const node of T.nodes.values()) node.remove();
  T.nodes.clear();
  T.items = [];
  T.pending = [];
  T.held = 0;
  T.droppedServer = T.droppedLocal = T.droppedPaused = 0;
  T.follow = true;
  T.newBelow = 0;
  T.anchor = null;
  invalidate('traffic');
}

/* ---------- rendering the list ---------- */

function layoutTraffic() {
  const items = T.items, n = items.length;
  const tops = T.tops, seqs = T.seqs;
  tops.length = n;
  seqs.length = n;
  let y = 0;
  for (let i = 0; i < n; i++) {
    const r = items[i];
    tops[i] = y;
    seqs[i] = r.seq;
    y += r.h || (r.est || (r.est = estimate(r, T)));
  }
  T.total = y;
  T.sizer.style.height = y + 'px';
}

/** Sizes the list to its messages, between its CSS min- and max-height
 * (no blank area under a few messages); returns its height. */
function fitTraffic() {
  const css = getComputedStyle(T.el);
  const min = parseFloat(css.minHeight) || 0, max = parseFloat(css.maxHeight) || Infinity;
  const h = Math.ceil(Math.max(min, Math.min(max, T.total)));
  if (T.height !== h) { T.height = h; T.el.style.height = h + 'px'; }
  return h;
}

/** Index of the last item whose top is at or above y. */
function indexAt(y) {
  const tops = T.tops;
  let lo = 0, hi = tops.length - 1, ans = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (tops[mid] <= y) { ans = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return ans;
}
/** Index of the item with this seq (items are in seq order), or -1. */
function indexOfSeq(seq) {
  const seqs = T.seqs;
  let lo = 0, hi = seqs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (seqs[mid] === seq) return mid;
    if (seqs[mid] < seq) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

function rememberAnchor(top) {
  if (T.follow || !T.tops.length) { T.anchor = null; return; }
  if (top == null) top = T.el.scrollTop;
  const i = indexAt(top);
  T.anchor = { seq: T.seqs[i], delta: top - T.tops[i] };
}

/** Where the list should be scrolled: the bottom when following, else
 * wherever keeps the anchor item where the user left it. */
function desiredScrollTop(current, viewH) {
  let want = current;
  if (T.follow) want = T.total - viewH;
  else if (T.anchor) {
    const i = indexOfSeq(T.anchor.seq);
    if (i >= 0) want = T.tops[i] + T.anchor.delta;
    else if (T.seqs.length && T.anchor.seq < T.seqs[0]) want = 0; // anchor dropped: oldest left
  }
  return Math.max(0, Math.min(want, T.total - viewH));
}

/** Mounts the items overlapping [top - OVERSCAN, top + viewH + OVERSCAN]
 * and unmounts the rest; returns how many were newly built. */
function mountVisible(top, viewH) {
  const items = T.items, bottom = top + viewH;
  const keep = new Set();
  let built = 0;
  if (items.length) {
    for (let i = indexAt(top - OVERSCAN); i < items.length && T.tops[i] < bottom + OVERSCAN; i++) {
      const r = items[i];
      let node = T.nodes.get(r.seq);
      if (!node) {
        node = buildItem(r, T);
        node._rec = r;
        T.nodes.set(r.seq, node);
        built++;
      }
      const y = T.tops[i];
      if (node._y !== y) { node._y = y; node.style.transform = 'translateY(' + y + 'px)'; }
      if (!node.isConnected) T.sizer.append(node);
      keep.add(r.seq);
    }
  }
  for (const [seq, node] of T.nodes) if (!keep.has(seq)) { node.remove(); T.nodes.delete(seq); }
  return built;
}

/** Reads the real heights of items mounted but not yet measured (an
 * item's content never changes once built); true if any changed. One
 * forced layout for the lot. */
function measureMounted() {
  let changed = false;
  for (const node of T.nodes.values()) {
    if (node._rec.h) continue;
    const h = node.offsetHeight;
    if (h) { node._rec.h = h; changed = true; }
  }
  return changed;
}

function setScrollTop(top) {
  if (Math.abs(T.el.scrollTop - top) >= 1) {
    T.el.scrollTop = top;
    T.setTop = top; // the scroll event this causes is ours, not the user's
  }
}

/* One traffic render reads the geometry once, works from the model
 * (tops are prefix sums of heights), and forces at most one or two
 * layouts to measure items it has just built. */
function renderTraffic() {
  const sc = T.el;
  const width = sc.clientWidth, current = sc.scrollTop;
  if (width !== T.width) {
    // New width: wrapped heights change; measure again.
    T.width = width;
    T.cpl = Math.max(20, Math.floor((width - 34) / T.charW));
    T.hexRow = T.cpl >= 56 ? 16 : 8;
    for (const r of T.items) { r.h = 0; r.est = 0; }
    for (const node of T.nodes.values()) node.remove();
    T.nodes.clear();
  }
  layoutTraffic();
  let viewH = fitTraffic();
  let top = desiredScrollTop(current, viewH);
  for (let pass = 0; pass < 3; pass++) {
    const built = mountVisible(top, viewH);
    if (!built || !measureMounted()) break;
    // Measured heights replace estimates: positions move; place again.
    layoutTraffic();
    viewH = fitTraffic();
    top = desiredScrollTop(top, viewH);
  }
  setScrollTop(top);
  T.top = top;
  rememberAnchor(top);
  const empty = !T.items.length;
  $('#traffic-empty').hidden = !empty;
  if (empty) renderEmptyTraffic();
  const jump = $('#traffic-jump');
  jump.hidden = T.follow || empty;
  if (!jump.hidden) setText(jump, T.newBelow ? '↓ ' + plural(T.newBelow, 'new message') : '↓ Latest');
  renderTrafficBar();
}
register('traffic', renderTraffic);

function renderTrafficBar() {
  setText($('#traffic-count'), plural(T.items.length, 'message'));
  setText($('#traffic-rate'), state.watch ? '· ' + fmtRate(T.rate) : '');
  const paused = $('#traffic-paused');
  paused.hidden = !T.paused;
  if (T.paused) setText(paused, 'Paused · ' + fmtInt(T.pending.length + T.droppedPaused) + ' new');
  const dropped = T.droppedServer + T.droppedLocal;
  const d = $('#traffic-dropped');
  d.hidden = !dropped;
  if (dropped) {
    setText(d, fmtInt(dropped) + ' dropped');
    setTitle(d, fmtInt(T.droppedServer) + ' dropped by the server because this page fell behind;\n' +
      fmtInt(T.droppedLocal) + ' removed here to keep at most ' + fmtInt(MAX_ITEMS) + ' messages in memory.');
  }
}
register('trafficBar', renderTrafficBar);

function renderEmptyTraffic() {
  const w = state.watch;
  const title = $('.empty-title', $('#traffic-empty'));
  const hint = title.nextElementSibling;
  if (!w) {
    setText(title, 'Not watching anything');
    setText(hint, 'Click a room, or the Watch button of a client, to see its messages here as they pass.');
  } else {
    setText(title, 'Waiting for messages ' + (w.room != null ? 'in #' + visible(w.room) : 'from or to ' + (visible(w.name) || 'client ' + w.client)) + '…');
    setText(hint, T.paused ? 'Paused: new messages are held until you resume.' : 'Messages appear here as they pass through the relay.');
  }
  $('#watch-lobby').hidden = !!w || !roomsTable.items.some((r) => r.name === 'lobby');
}

function setTrafficView(v) {
  if (v !== 'text' && v !== 'hex' && v !== 'both') v = 'both';
  T.view = v;
  T.el.classList.remove('view-text', 'view-hex', 'view-both');
  T.el.classList.add('view-' + v);
  for (const b of document.querySelectorAll('.seg button[data-view]')) b.setAttribute('aria-pressed', String(b.dataset.view === v));
  for (const r of T.items) { r.h = 0; r.est = 0; }
  // Items are built for one view (how much hex they show): build them again.
  for (const node of T.nodes.values()) node.remove();
  T.nodes.clear();
  storage.set('traffic.view', v);
  invalidate('traffic');
}

/** Turns the Modbus CRC16 check of each message on or off. */
function setCrcCheck(on) {
  T.crc = on;
  $('#traffic-crc').setAttribute('aria-pressed', String(on));
  storage.set('traffic.crc', on ? '1' : '0');
  for (const node of T.nodes.values()) node.remove();
  T.nodes.clear();
  invalidate('traffic');
}

/* ---------- saving ---------- */

function escapeForLog(s) {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const m = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }[c];
    return m || '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
  });
}

function saveTraffic(format) {
  const all = T.items.concat(T.pending).filter((r) => !r.mark);
  if (!all.length) { toast('There is nothing to save yet.', 'info'); return; }
  const w = state.watch;
  const what = w ? (w.room != null ? '#' + w.room : (w.name || 'client-' + w.client)) : 'traffic';
  const stamp = new Date();
  const fileStamp = stamp.getFullYear() + pad2(stamp.getMonth() + 1) + pad2(stamp.getDate()) + '-' + pad2(stamp.getHours()) + pad2(stamp.getMinutes()) + pad2(stamp.getSeconds());
  const safe = what.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || 'traffic';
  let blob, name;
  if (format === 'json') {
    const doc = {
      watched: w ? (w.room != null ? { room: w.room } : { client: w.client, name: w.name }) : null,
      saved_at: stamp.getTime(),
      dropped: { server: T.droppedServer, local: T.droppedLocal },
      items: all.map((r) => ({ at: r.at, room: r.room, from: r.from, from_id: r.fromId, to: r.to, size: r.size, bytes: r.b64 || bytesToBase64(recordBytes(r)), text: r.text, history: r.history || undefined })),
    };
    blob = new Blob([JSON.stringify(doc, null, 1)], { type: 'application/json' });
    name = 'switchboard-' + safe + '-' + fileStamp + '.json';
  } else {
    const lines = ['# switchboard traffic of ' + what + ', saved ' + fmtDateTime(stamp.getTime()) + ', ' + plural(all.length, 'message') +
      (T.droppedServer + T.droppedLocal ? ', ' + fmtInt(T.droppedServer + T.droppedLocal) + ' dropped' : '')];
    for (const r of all) {
      const dest = r.room != null ? '#' + r.room : r.to != null ? '-> ' + r.to : '';
      lines.push('', fmtDateTime(r.at) + '  ' + r.from + (r.fromId != null ? ' (' + r.fromId + ')' : '') + '  ' + dest + '  ' + r.size + ' bytes' + (r.history ? '  (history)' : ''));
      const bytes = recordBytes(r);
      if (r.text !== null) lines.push('  text: ' + escapeForLog(r.text));
      const d = hexDump(bytes, bytes.length);
      const off = d.off.split('\n'), hex = d.hex.split('\n'), asc = d.ascii.split('\n');
      for (let i = 0; i < hex.length && hex[i]; i++) lines.push('  ' + off[i] + '  ' + hex[i].padEnd(47) + '  ' + asc[i]);
      if (r.size > bytes.length) lines.push('  (first ' + bytes.length + ' of ' + r.size + ' bytes)');
    }
    blob = new Blob([lines.join('\n') + '\n'], { type: 'text/plain;charset=utf-8' });
    name = 'switchboard-' + safe + '-' + fileStamp + '.txt';
  }
  const url = URL.createObjectURL(blob);
  const a = el('a', { attrs: { href: url, download: name } });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 2000);
}

export function initTraffic() {
  const probe = el('span', { text: '0'.repeat(100) });
  probe.style.position = 'absolute';
  probe.style.visibility = 'hidden';
  T.el.append(probe);
  T.charW = probe.getBoundingClientRect().width / 100 || 7.5;
  probe.remove();

  setTrafficView(storage.get('traffic.view') || 'both');

  T.el.addEventListener('scroll', () => {
    const sc = T.el;
    if (T.setTop != null && Math.abs(sc.scrollTop - T.setTop) < 1) { T.setTop = null; return; }
    T.setTop = null;
    const atBottom = sc.scrollTop + sc.clientHeight >= sc.scrollHeight - 6;
    if (atBottom !== T.follow) { T.follow = atBottom; if (atBottom) T.newBelow = 0; }
    rememberAnchor();
    onNextFrame('traffic', renderTraffic);
  }, { passive: true });
  if (window.ResizeObserver) new ResizeObserver(() => onNextFrame('traffic', renderTraffic)).observe(T.el);

  // "Show all" and "Show less" (a click on a sender watches it: watch.js).
  T.el.addEventListener('click', (e) => {
    const more = e.target.closest('.ti-more');
    if (more) {
      const seq = Number(more.dataset.seq);
      const node = T.nodes.get(seq);
      if (node) {
        const r = node._rec;
        r.open = !r.open;
        r.h = 0;
        node.remove();
        T.nodes.delete(seq);
        if (T.follow && r.open) { T.follow = false; rememberAnchor(); }
        onNextFrame('traffic', renderTraffic);
      }
    }
  });

  for (const b of document.querySelectorAll('.seg button[data-view]')) b.addEventListener('click', () => setTrafficView(b.dataset.view));
  $('#traffic-pause').addEventListener('click', () => setPaused(!T.paused));
  $('#traffic-crc').addEventListener('click', () => setCrcCheck(!T.crc));
  setCrcCheck(storage.get('traffic.crc') === '1');
  $('#traffic-clear').addEventListener('click', clearTraffic);
  $('#traffic-save-txt').addEventListener('click', () => saveTraffic('txt'));
  $('#traffic-save-json').addEventListener('click', () => saveTraffic('json'));
  $('#traffic-jump').addEventListener('click', () => {
    T.follow = true;
    T.newBelow = 0;
    renderTraffic();
  });

  // Messages per second shown in the bar, counted over the last second.
  setInterval(() => {
    T.rate = T.arrivals;
    T.arrivals = 0;
    invalidate('trafficBar');
  }, 1000);
}
