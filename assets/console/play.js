/* The playground page: get a port, watch what arrives there, answer it.
 * Everything goes through /play/api (the visitor's cookie says whose
 * ports these are); a share link (/play/w/TOKEN) joins someone's port.
 * Client data reaches the page through textContent only. */

import { $, el, setText, storage, toast, copyText, initTheme } from './dom.js';
import { fmtInt, fmtBytes, fmtClock, fmtDateTime, fmtAgo, controlPicture, bytesToBase64, parseHex } from './format.js';
import { hexDump } from './traffic-item.js';

// Every module of the page loaded: boot.js may reload it again after a
// later failure.
try { sessionStorage.removeItem('switchboard-reloaded-after-a-script-failed'); } catch (e) { /* no storage */ }

/** Messages the page keeps; older ones are dropped (the page says so). */
const MAX_LOG = 2000;
/** Most bytes of one message shown (its size is shown in full). */
const SHOWN = 4096;
const UTF8_IN = new TextDecoder('utf-8', { fatal: false });
const UTF8_OUT = new TextEncoder();

const S = {
  mode: 'text',
  view: storage.get('play.view') || 'text',
  format: 'text',
  port: null,        // the port's view, as the API last said it
  ws: null,
  log: [],           // {at, dir: 'in'|'out'|'note', who, bytes}
  dropped: 0,
  repeat: null,
  clients: new Map(),
};

async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
  let res;
  try { res = await fetch(path, init); } catch (e) { throw Object.assign(new Error('The server could not be reached.'), { status: 0 }); }
  let data = null;
  try { data = await res.json(); } catch (e) { /* 204, or not JSON */ }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw Object.assign(new Error(err.message || 'The server answered ' + res.status), {
      status: res.status, code: err.code, retry: Number(res.headers.get('Retry-After')) || 0,
    });
  }
  return data;
}

/* ---------- segmented buttons ---------- */

function seg(root, attr, value, onPick) {
  const buttons = root.querySelectorAll('button[data-' + attr + ']');
  const pick = (v) => { for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset[attr] === v)); };
  pick(value);
  for (const b of buttons) b.addEventListener('click', () => { pick(b.dataset[attr]); onPick(b.dataset[attr]); });
}

/* ---------- the port ---------- */

function hostForAddress() {
  const h = location.hostname;
  return h.includes(':') ? '[' + h + ']' : h;
}

function showPort(view) {
  S.port = view;
  storage.set('play.port', String(view.port));
  $('#start').hidden = true;
  for (const id of ['#port', '#clients-card', '#log-card', '#send-card']) $(id).hidden = false;
  const addr = hostForAddress() + ':' + view.port;
  setText($('#addr'), addr);
  setText($('#port-mode'), { text: 'TCP text', raw: 'TCP raw', udp: 'UDP' }[view.mode] || view.mode);
  setText($('#try-cmd'), (view.mode === 'udp' ? 'nc -u ' : 'nc ') + location.hostname + ' ' + view.port);
  $('#close-port').hidden = !view.owner;
  renderClients(view.clients || []);
  renderCountdown();
  setStatus('live', 'port ' + view.port);
}

function showStart(message) {
  S.port = null;
  storage.set('play.port', '');
  stopRepeat();
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  $('#start').hidden = false;
  for (const id of ['#port', '#clients-card', '#send-card']) $(id).hidden = true;
  $('#log-card').hidden = S.log.length === 0;
  setStatus('idle', 'no port yet');
  if (message) toast(message, 'info');
}

function setStatus(state, text) {
  const s = $('#status');
  s.dataset.state = state;
  setText(s, text);
}

function renderCountdown() {
  const p = S.port;
  if (!p) return;
  const inUse = (p.clients && p.clients.length > 0) || (S.ws && S.ws.readyState === 1);
  const left = Math.max(0, Math.round((p.expires_at - Date.now()) / 1000));
  const mmss = Math.floor(left / 60) + ':' + String(left % 60).padStart(2, '0');
  setText($('#countdown'), inUse ? 'open while in use; then ' + mmss + ' left' : 'closes in ' + mmss + ' unless used');
}

function renderClients(clients) {
  const body = $('#clients');
  setText($('#clients-count'), fmtInt(clients.length));
  $('#no-clients').hidden = clients.length > 0;
  const seen = new Set();
  for (const c of clients) {
    seen.add(c.id);
    let row = S.clients.get(c.id);
    if (!row) {
      row = { tr: el('tr'), cells: [] };
      for (let i = 0; i < 4; i++) { const td = el('td'); row.cells.push(td); row.tr.append(td); }
      row.cells[2].className = 'num'; row.cells[3].className = 'num';
      const kick = el('button', { className: 'btn btn-xs btn-danger', type: 'button', text: 'Disconnect',
        on: { click: () => kickClient(c.id) } });
      row.tr.append(el('td', null, kick));
      body.append(row.tr);
      S.clients.set(c.id, row);
    }
    setText(row.cells[0], c.addr);
    setText(row.cells[1], fmtAgo(c.connected_at));
    row.cells[1].title = fmtDateTime(c.connected_at);
    setText(row.cells[2], fmtBytes(c.bytes_in));
    setText(row.cells[3], fmtBytes(c.bytes_out));
  }
  for (const [id, row] of S.clients) if (!seen.has(id)) { row.tr.remove(); S.clients.delete(id); }
  // The send box's choice of client.
  const to = $('#send-to');
  const chosen = to.value;
  const options = [['', 'all clients']].concat(clients.map((c) => [String(c.id), c.addr]));
  if (to.options.length !== options.length || options.some(([v], i) => to.options[i].value !== v)) {
    to.replaceChildren(...options.map(([v, t]) => el('option', { text: t, attrs: { value: v } })));
    to.value = options.some(([v]) => v === chosen) ? chosen : '';
  }
}

/* ---------- the live feed ---------- */

function connectLive() {
  if (!S.port) return;
  const port = S.port.port;
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/play/api/ports/' + port + '/live');
  S.ws = ws;
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.type === 'port') { S.port = m.port; $('#close-port').hidden = !m.port.owner; renderClients(m.port.clients); renderCountdown(); }
    else if (m.type === 'traffic') { for (const item of m.items) received(item); if (m.dropped) note(fmtInt(m.dropped) + ' messages came faster than the page could show them, and were skipped'); }
    else if (m.type === 'closed') { note('The port closed.'); showStart('Your port closed: it was left without clients or a page for its time.'); }
  };
  ws.onclose = () => {
    if (S.ws !== ws || !S.port) return;
    setStatus('reconnecting', 'reconnecting');
    setTimeout(() => { if (S.ws === ws && S.port) resume(S.port.port); }, 2000);
  };
}

function received(item) {
  // What the page itself sent is in the log already.
  if (item.from_id == null) return;
  const bytes = item.bytes != null ? base64Bytes(item.bytes) : UTF8_OUT.encode(item.text || '');
  const client = S.port && (S.port.clients || []).find((c) => c.id === item.from_id);
  add({ at: item.at, dir: 'in', who: client ? client.addr : item.from, bytes, size: item.size });
}

function base64Bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function note(text) { add({ at: Date.now(), dir: 'note', who: '', bytes: UTF8_OUT.encode(text) }); }

/* ---------- the log ---------- */

function add(entry) {
  S.log.push(entry);
  const list = $('#log');
  list.append(render(entry));
  while (S.log.length > MAX_LOG) { S.log.shift(); list.firstChild.remove(); S.dropped++; }
  if (S.dropped) { const n = $('#log-note'); n.hidden = false; setText(n, 'The page keeps the last ' + fmtInt(MAX_LOG) + ' messages; ' + fmtInt(S.dropped) + ' older ones were dropped (saved logs hold what is shown).'); }
  setText($('#log-count'), fmtInt(S.log.length));
  $('#log-card').hidden = false;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

function textOf(bytes) {
  const shown = bytes.subarray(0, SHOWN);
  let out = '';
  for (const ch of UTF8_IN.decode(shown)) {
    const cp = ch.codePointAt(0);
    const pic = cp === 10 ? null : controlPicture(cp);
    out += pic === null ? ch : '[' + pic + ']';
  }
  return bytes.length > SHOWN ? out + ' …' : out;
}

function render(entry) {
  const dir = { in: '← ' + entry.who, out: '→ ' + (entry.who || 'all clients'), note: '•' }[entry.dir];
  const size = entry.dir === 'note' ? '' : fmtBytes(entry.size != null ? entry.size : entry.bytes.length);
  const head = el('div', { className: 'play-msg-head' },
    el('span', { className: 'mono', text: fmtClock(entry.at) }),
    el('span', { className: 'dir-' + entry.dir, text: dir }),
    el('span', { text: size }));
  const li = el('li', null, head, el('pre', { className: 'play-text', text: textOf(entry.bytes) }));
  if (entry.dir !== 'note') {
    const d = hexDump(entry.bytes, SHOWN, 16);
    const lines = d.hex.split('\n');
    const asc = d.ascii.split('\n');
    const offs = d.off.split('\n');
    li.append(el('pre', { className: 'play-hex', text: lines.map((h, i) => offs[i] + '  ' + h.padEnd(47) + '  ' + asc[i]).join('\n') }));
  }
  return li;
}

function saveLog(kind) {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  let blob;
  if (kind === 'json') {
    const records = S.log.map((e) => ({ at: new Date(e.at).toISOString(), dir: e.dir, who: e.who, size: e.size != null ? e.size : e.bytes.length, text: UTF8_IN.decode(e.bytes), base64: bytesToBase64(e.bytes) }));
    blob = new Blob([JSON.stringify({ port: S.port && S.port.port, messages: records }, null, 2)], { type: 'application/json' });
  } else {
    const lines = S.log.map((e) => fmtDateTime(e.at) + '  ' + ({ in: '<- ' + e.who, out: '-> ' + (e.who || 'all'), note: '**' }[e.dir]) + '  ' + textOf(e.bytes));
    blob = new Blob([lines.join('\n') + '\n'], { type: 'text/plain' });
  }
  const a = el('a', { attrs: { href: URL.createObjectURL(blob), download: 'playground-' + stamp + '.' + kind } });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/* ---------- actions ---------- */

async function getPort() {
  const button = $('#get-port');
  const err = $('#start-error');
  button.disabled = true;
  err.hidden = true;
  try {
    showPort(await call('POST', '/play/api/ports', { mode: S.mode }));
    connectLive();
  } catch (e) {
    err.hidden = false;
    setText(err, e.message);
    if (e.retry) retryCountdown(err, e.message, e.retry);
  } finally {
    button.disabled = false;
  }
}

function retryCountdown(node, message, seconds) {
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0 || node.hidden) { setText(node, message.replace(/ within \d+s| in \d+s/, '') + ' Try again now.'); return; }
    setText(node, message.replace(/\d+s/, left + 's'));
    setTimeout(tick, 1000);
  };
  tick();
}

async function resume(port) {
  try { showPort(await call('GET', '/play/api/ports/' + port)); connectLive(); }
  catch (e) { showStart(e.status === 404 ? 'Your port closed: it was left without clients or a page for its time.' : e.message); }
}

async function send(event) {
  if (event) event.preventDefault();
  const err = $('#send-error');
  err.hidden = true;
  const raw = $('#send-text').value;
  let bytes;
  if (S.format === 'hex') {
    const parsed = parseHex(raw);
    if (parsed.error) { err.hidden = false; setText(err, parsed.error); stopRepeat(); return; }
    bytes = parsed.bytes;
  } else {
    bytes = UTF8_OUT.encode(raw + ($('#send-newline').checked ? '\n' : ''));
    if (!bytes.length) { err.hidden = false; setText(err, 'Type something to send.'); stopRepeat(); return; }
  }
  const to = $('#send-to').value;
  const body = { bytes: bytesToBase64(bytes) };
  if (to) body.to = Number(to);
  try {
    await call('POST', '/play/api/ports/' + S.port.port + '/send', body);
    const target = to && (S.port.clients || []).find((c) => String(c.id) === to);
    add({ at: Date.now(), dir: 'out', who: target ? target.addr : '', bytes });
  } catch (e) {
    err.hidden = false;
    setText(err, e.message);
    stopRepeat();
  }
}

function startRepeat() {
  stopRepeat();
  const ms = Math.max(100, Number($('#repeat-ms').value) || 1000);
  S.repeat = setInterval(() => { if (S.port) send(); else stopRepeat(); }, ms);
  setText($('#send-button'), 'Sending every ' + ms + ' ms');
}
function stopRepeat() {
  if (S.repeat) clearInterval(S.repeat);
  S.repeat = null;
  $('#repeat').checked = false;
  setText($('#send-button'), 'Send');
}

async function kickClient(id) {
  try { await call('DELETE', '/play/api/ports/' + S.port.port + '/clients/' + id); }
  catch (e) { toast(e.message, 'error'); }
}

async function portAction(method, path, done) {
  try { done(await call(method, '/play/api/ports/' + S.port.port + path)); }
  catch (e) { if (e.status === 404) showStart('Your port is gone.'); else toast(e.message, 'error'); }
}

/* ---------- start ---------- */

function init() {
  initTheme();
  const list = $('#log');
  list.dataset.view = S.view;
  seg($('#mode'), 'mode', S.mode, (m) => { S.mode = m; });
  seg($('#view'), 'view', S.view, (v) => { S.view = v; list.dataset.view = v; storage.set('play.view', v); });
  seg($('#send-format'), 'format', S.format, (f) => { S.format = f; $('#send-newline').disabled = f === 'hex'; });
  $('#get-port').addEventListener('click', getPort);
  $('#send-form').addEventListener('submit', (e) => { e.preventDefault(); if ($('#repeat').checked) startRepeat(); else send(); });
  $('#repeat').addEventListener('change', (e) => { if (!e.target.checked) stopRepeat(); });
  $('#copy-addr').addEventListener('click', () => copyText($('#addr').textContent));
  $('#share').addEventListener('click', () => copyText(location.origin + S.port.watch));
  $('#extend').addEventListener('click', () => portAction('POST', '/extend', (v) => { S.port.expires_at = v.expires_at; renderCountdown(); toast('Your port stays open for its whole time again.', 'ok'); }));
  $('#close-port').addEventListener('click', () => portAction('DELETE', '', () => showStart('Port closed.')));
  $('#save-txt').addEventListener('click', () => saveLog('txt'));
  $('#save-json').addEventListener('click', () => saveLog('json'));
  $('#clear-log').addEventListener('click', () => { S.log = []; S.dropped = 0; list.replaceChildren(); setText($('#log-count'), '0'); $('#log-note').hidden = true; });
  setInterval(renderCountdown, 1000);

  const share = location.pathname.match(/^\/play\/w\/([0-9a-f]{64})$/);
  if (share) {
    call('POST', '/play/api/join', { watch: share[1] })
      .then((view) => { history.replaceState(null, '', '/play'); showPort(view); connectLive(); })
      .catch((e) => showStart(e.status === 404 ? 'That share link has expired with its port.' : e.message));
    return;
  }
  const last = Number(storage.get('play.port'));
  if (last) resume(last); else showStart();
}

init();
