/* The live feed: one WebSocket to /api/v1/live, reconnected with a
 * backoff, the status chip and the offline banner, the throttled "view"
 * message, and what each incoming message does. Views plug into the feed
 * with onLive (they import this module to send, so it cannot import them). */

import { $, setText, setTitle, toast } from './dom.js';
import { initLogout } from './auth.js';
import { state, view, invalidate } from './state.js';

/* What views do with the feed, registered when their module loads:
 *   open(): the socket is open and the view sent (the watch resends itself);
 *   snapshot(msg): a snapshot, after its stats and listeners (the tables' pages);
 *   traffic(items, dropped): messages of the watched room or client;
 *   watchFailed(): the watched client left, or the watched room emptied. */
const hooks = { open() {}, snapshot() {}, traffic() {}, watchFailed() {} };
export function onLive(name, fn) { hooks[name] = fn; }

/* ---------- WebSocket ---------- */

const live = { ws: null, connected: false, delay: 1000, retryAt: 0, timer: null, countdown: null };

export function connect() {
  clearTimeout(live.timer);
  clearInterval(live.countdown);
  setStatus('connecting');
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  let ws;
  try {
    ws = new WebSocket(proto + '//' + location.host + '/api/v1/live');
  } catch (e) {
    scheduleReconnect();
    return;
  }
  live.ws = ws;
  ws.onopen = () => {
    live.connected = true;
    setStatus('live');
    $('#banner').hidden = true;
    document.body.classList.remove('offline');
    sendViewNow();
    hooks.open();
    if (document.body.dataset.auth === 'unknown') initLogout();
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    live.delay = 1000; // a working feed resets the backoff
    handleMessage(msg);
  };
  ws.onclose = (ev) => {
    if (live.ws !== ws) return;
    live.ws = null;
    live.connected = false;
    if (ev.code === 4401 || ev.code === 1008) { location.assign('/login'); return; }
    scheduleReconnect();
  };
  ws.onerror = () => { /* onclose follows and reconnects */ };
}

function scheduleReconnect() {
  setStatus('offline');
  document.body.classList.add('offline');
  const delay = live.delay;
  live.delay = Math.min(10000, live.delay * 2);
  live.retryAt = Date.now() + delay;
  const banner = $('#banner');
  banner.hidden = false;
  const tick = () => {
    const s = Math.max(0, Math.ceil((live.retryAt - Date.now()) / 1000));
    setText($('#banner-text'), 'Disconnected from the server, reconnecting' + (s ? ' in ' + s + ' s…' : '…'));
  };
  tick();
  clearInterval(live.countdown);
  live.countdown = setInterval(tick, 500);
  live.timer = setTimeout(connect, delay);
}

/** The "Reconnect now" button of the banner. */
export function reconnectNow() { live.delay = 1000; connect(); }

export function wsSend(obj) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(obj));
}

function setStatus(s) {
  const node = $('#status');
  node.dataset.state = s;
  setText(node, s === 'live' ? 'live' : s === 'offline' ? 'offline' : 'connecting');
  setTitle(node, s === 'live' ? 'Receiving live updates' : s === 'offline' ? 'Not connected to the live feed' : 'Connecting to the live feed');
}

/* The view message is throttled: scrolling or typing sends at most one every 150 ms. */
let viewTimer = null;
let viewSentAt = 0;
export function sendView() {
  if (viewTimer) return;
  viewTimer = setTimeout(sendViewNow, Math.max(0, viewSentAt + 150 - Date.now()));
}
function sendViewNow() {
  clearTimeout(viewTimer);
  viewTimer = null;
  viewSentAt = Date.now();
  wsSend({ type: 'view', clients: Object.assign({}, view.clients), rooms: Object.assign({}, view.rooms), closed: Object.assign({}, view.closed) });
}

function handleMessage(msg) {
  switch (msg.type) {
    case 'hello':
      state.version = msg.version;
      setText($('#version'), 'v' + msg.version);
      break;
    case 'snapshot':
      onSnapshot(msg);
      break;
    case 'traffic':
      hooks.traffic(Array.isArray(msg.items) ? msg.items : [], msg.dropped | 0);
      break;
    case 'error':
      if (msg.code === 'unauthorized') { location.assign('/login'); return; }
      if (msg.code === 'no_such_client' || msg.code === 'no_such_room') {
        // The watch failed (the client left, the room emptied): say so, stop pretending.
        toast(msg.message || msg.code, 'error', 'Cannot watch');
        hooks.watchFailed();
        break;
      }
      toast(msg.message || msg.code || 'Unknown error', 'error', 'Server error');
      break;
    default:
      break; // newer servers may send more; ignore what we do not know
  }
}

function onSnapshot(msg) {
  const s = msg.stats;
  if (s) {
    state.stats = s;
    // Correct relative times when the browser's clock is off by more than 2 s.
    if (s.started_at && s.uptime_seconds != null) {
      const skew = s.started_at + s.uptime_seconds * 1000 - Date.now();
      state.skew = Math.abs(skew) > 2000 ? skew : 0;
    }
    for (const k of ['clients', 'messages', 'bytes', 'rates', 'memory', 'disconnects']) if (!s[k] || typeof s[k] !== 'object') s[k] = {};
    state.history.push({ c: s.clients.current, r: s.rooms, mi: s.rates.messages_in, mo: s.rates.messages_out, bi: s.rates.bytes_in, bo: s.rates.bytes_out });
    if (state.history.length > 60) state.history.shift();
    invalidate('overview');
  }
  if (Array.isArray(msg.listeners)) { state.listeners = msg.listeners; invalidate('listeners'); }
  hooks.snapshot(msg);
  invalidate('datalists');
  const now = Date.now();
  for (const [id, at] of state.kicked) if (now - at > 5000) state.kicked.delete(id);
}
