/* switchboard console: plain JavaScript, no framework, no build step.
 *
 * Layout of this file:
 *   1. helpers (DOM building, formatting, REST)
 *   2. state, render scheduler, live feed (WebSocket)
 *   3. overview, listeners
 *   4. virtual tables (clients, rooms, disconnects)
 *   5. traffic view
 *   6. watching, send panel, kick dialog
 *
 * Everything that comes from clients (names, rooms, text, reasons) is
 * untrusted: it only ever reaches the page through textContent, text nodes
 * or attributes, never through innerHTML.
 */
(function () {
  'use strict';

  /* ===================================================================
   * 1. Helpers
   * =================================================================== */

  const $ = (sel, root) => (root || document).querySelector(sel);

  /** Builds an element. props: className, text, title, data (dataset), attrs, on (events). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      if (props.className) node.className = props.className;
      if (props.text != null) node.textContent = props.text;
      if (props.title != null) node.title = props.title;
      if (props.type) node.type = props.type;
      if (props.data) for (const k in props.data) node.dataset[k] = props.data[k];
      if (props.attrs) for (const k in props.attrs) node.setAttribute(k, props.attrs[k]);
      if (props.on) for (const k in props.on) node.addEventListener(k, props.on[k]);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  /** Sets text only when it changed (cheap repeated renders, no layout churn). */
  function setText(node, text) {
    text = text == null ? '' : String(text);
    if (node._text !== text) { node.textContent = text; node._text = text; }
  }
  function setTitle(node, title) {
    title = title == null ? '' : String(title);
    if (node._title !== title) { node.title = title; node._title = title; }
  }
  function setClass(node, cls) {
    if (node._cls !== cls) { node.className = cls; node._cls = cls; }
  }

  const storage = {
    get(k) { try { return localStorage.getItem('switchboard.' + k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem('switchboard.' + k, v); } catch (e) { /* private mode */ } },
  };

  /* ---------- formatting ---------- */

  const intFmt = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => intFmt.format(Math.round(n || 0));

  /** 999, 1.2k, 12.3k, 123k, 1.2M ... */
  function fmtCount(n) {
    n = Number(n) || 0;
    if (Math.abs(n) < 1000) return String(Math.round(n));
    const units = ['k', 'M', 'G', 'T'];
    let u = -1;
    do { n /= 1000; u++; } while (Math.abs(n) >= 999.5 && u < units.length - 1);
    return (Math.abs(n) < 100 ? n.toFixed(1) : n.toFixed(0)) + units[u];
  }

  /** Messages per second: 0/s, 2.5/s, 42/s, 3.4k/s. */
  function fmtRate(n) {
    n = Number(n) || 0;
    if (n === 0) return '0/s';
    if (n < 10) return n.toFixed(1) + '/s';
    if (n < 1000) return Math.round(n) + '/s';
    return fmtCount(n) + '/s';
  }

  /** Bytes with binary units, matching the server's KiB/MiB settings. */
  function fmtBytes(n) {
    n = Number(n) || 0;
    if (n < 1024) return Math.round(n) + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let u = -1;
    do { n /= 1024; u++; } while (n >= 1023.5 && u < units.length - 1);
    return (n < 100 ? n.toFixed(1) : n.toFixed(0)) + ' ' + units[u];
  }

  /** 45 s, 3 min 20 s, 2 h 13 min, 3 d 4 h. */
  function fmtDuration(sec) {
    sec = Math.max(0, Math.floor(Number(sec) || 0));
    if (sec < 60) return sec + ' s';
    const m = Math.floor(sec / 60), s = sec % 60;
    if (m < 60) return s ? m + ' min ' + s + ' s' : m + ' min';
    const h = Math.floor(m / 60), mm = m % 60;
    if (h < 24) return mm ? h + ' h ' + mm + ' min' : h + ' h';
    const d = Math.floor(h / 24), hh = h % 24;
    return hh ? d + ' d ' + hh + ' h' : d + ' d';
  }

  /** Coarse duration for "ago" strings: one unit only. */
  function fmtAgo(ms) {
    if (!ms) return '–';
    const diff = Math.max(0, serverNow() - ms);
    if (diff < 1000) return 'just now';
    const s = Math.floor(diff / 1000);
    if (s < 60) return s + ' s ago';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ago';
    const h = Math.floor(m / 60);
    if (h < 24) return h + ' h ago';
    return Math.floor(h / 24) + ' d ago';
  }

  const pad2 = (n) => (n < 10 ? '0' : '') + n;
  const pad3 = (n) => (n < 10 ? '00' : n < 100 ? '0' : '') + n;
  /** HH:MM:SS.mmm in local time. */
  function fmtClock(ms, withMillis) {
    const d = new Date(ms);
    const t = pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
    return withMillis === false ? t : t + '.' + pad3(d.getMilliseconds());
  }
  /** 2025-11-22 14:03:07 (local), for tooltips and saved logs. */
  function fmtDateTime(ms) {
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + fmtClock(ms);
  }
  /* Untrusted short strings (names, rooms, reasons) shown with control,
   * invisible and bidi-override characters made visible, so that nothing
   * can hide, reorder or fake what is displayed next to it. */
  const SUSPECT = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/;
  function visible(s) {
    s = s == null ? '' : String(s);
    if (!SUSPECT.test(s)) return s;
    let out = '';
    for (const ch of s) {
      const pic = controlPicture(ch.codePointAt(0));
      out += pic === null ? ch : pic.length > 1 ? '[' + pic + ']' : pic;
    }
    return out;
  }
  const plural = (n, one, many) => fmtInt(n) + ' ' + (n === 1 ? one : many || one + 's');

  /* ---------- bytes and base64 ---------- */

  const HEX = [];
  for (let i = 0; i < 256; i++) HEX.push((i < 16 ? '0' : '') + i.toString(16).toUpperCase());

  function base64ToBytes(b64) {
    let bin;
    try { bin = atob(b64 || ''); } catch (e) { return null; }
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const UTF8 = new TextEncoder();
  /** A traffic record's bytes: sent as base64 when they are not UTF-8, as text when they are. */
  function recordBytes(r) {
    if (r.b64) return base64ToBytes(r.b64) || new Uint8Array(0);
    return r.text ? UTF8.encode(r.text) : new Uint8Array(0);
  }
  function bytesToBase64(bytes) {
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(bin);
  }

  /** Parses "01 03 00 0A", "0x01,0x03", "01030A" into bytes, or returns {error}. */
  function parseHex(input) {
    const tokens = input.split(/[\s,;]+/).filter(Boolean);
    const out = [];
    for (let t = 0; t < tokens.length; t++) {
      let tok = tokens[t];
      if (/^0x/i.test(tok)) tok = tok.slice(2);
      const bad = tok.search(/[^0-9a-fA-F]/);
      if (bad >= 0) {
        return { error: '"' + tok[bad] + '" is not a hex digit (in "' + tokens[t] + '", group ' + (t + 1) + '). Use 0–9 and A–F.' };
      }
      if (tok.length % 2) {
        return { error: '"' + tokens[t] + '" has an odd number of digits; write every byte as two digits (e.g. 0' + tok.slice(-1) + ').' };
      }
      for (let i = 0; i < tok.length; i += 2) out.push(parseInt(tok.substr(i, 2), 16));
    }
    if (!out.length) return { error: 'Enter at least one byte, like 01 03 00 0A.' };
    return { bytes: new Uint8Array(out) };
  }

  /* ---------- REST ---------- */

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { 'Content-Type': 'application/json', Accept: 'application/json' } };
    if (body !== undefined) init.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw Object.assign(new Error('The server could not be reached.'), { code: 'network' });
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* empty or not JSON */ }
    if (res.status === 401) {
      location.assign('/login');
      throw Object.assign(new Error('Your session has ended; please sign in again.'), { code: 'unauthorized' });
    }
    if (!res.ok) {
      const err = data && data.error;
      throw Object.assign(new Error((err && err.message) || 'The server answered ' + res.status + ' ' + res.statusText), {
        code: (err && err.code) || 'http_' + res.status,
      });
    }
    return data;
  }

  /* ---------- toasts ---------- */

  function toast(message, kind, title) {
    const box = $('#toasts');
    if (!box) return;
    const close = el('button', { className: 'btn btn-ghost btn-xs', type: 'button', text: '✕', attrs: { 'aria-label': 'Dismiss' } });
    const node = el('div', { className: 'toast ' + (kind || ''), attrs: { role: kind === 'error' ? 'alert' : 'status' } },
      el('div', { className: 'toast-body' }, title ? el('div', { className: 'toast-title', text: title }) : null, el('div', { text: message })),
      close);
    const remove = () => node.remove();
    close.addEventListener('click', remove);
    box.append(node);
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(remove, kind === 'error' ? 9000 : 5000);
  }

  /** The Clipboard API needs a secure context (https or localhost); over
   * plain http to another host, show the text to copy by hand instead. */
  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(text, 'ok', 'Copied');
    } catch (e) {
      toast(text, 'info', 'Copy this by hand');
    }
  }

  /* ---------- theme (shared with the login page) ---------- */

  function initTheme() {
    const saved = storage.get('theme');
    if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
    const btn = $('#theme-toggle');
    if (!btn) return;
    btn.addEventListener('click', () => {
      const current = document.documentElement.dataset.theme ||
        (matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark');
      const next = current === 'light' ? 'dark' : 'light';
      document.documentElement.dataset.theme = next;
      storage.set('theme', next);
    });
  }

  /* ---------- admin token ---------- */

  /** Whether the server has an admin token: 'token', 'none' (there is
   * none and this is the server's own machine, where the console needs no
   * signing in), 'remote' (none, and this is another machine, which the
   * console does not answer) or 'unknown'. The page cannot read its
   * cookie (HttpOnly), so it asks the API once without it: a request with
   * no credentials is no failed attempt, and a HEAD has no body. */
  async function adminAuth() {
    try {
      const res = await fetch('/api/v1/stats', { method: 'HEAD', credentials: 'omit', cache: 'no-store' });
      if (res.status === 401 || res.status === 429) return 'token';
      if (res.ok) return 'none';
      if (res.status === 403) return 'remote';
    } catch (e) { /* unreachable for now */ }
    return 'unknown';
  }

  /* ---------- login page ---------- */

  if (document.body.dataset.page === 'login') {
    initTheme();
    const q = new URLSearchParams(location.search);
    if (q.has('failed')) $('#login-failed').hidden = false;
    if (q.has('limited')) $('#login-limited').hidden = false;
    // Without a token there is nothing to sign in with (the form would
    // take any string): here, open the console; elsewhere, say why not.
    adminAuth().then((auth) => {
      if (auth === 'none') location.replace('/');
      if (auth === 'remote') {
        $('#login-no-token').hidden = false;
        $('.login-form').hidden = true;
        $('.login-hint').hidden = true;
      }
    });
    return;
  }

  /* ===================================================================
   * 2. State, scheduler, live feed
   * =================================================================== */

  const state = {
    version: null,
    stats: null,
    listeners: [],
    skew: 0,            // server clock minus browser clock, when it matters
    watch: null,        // {room} or {client, name}
    kicked: new Map(),  // client id -> time kicked, to grey the row until it goes
    history: [],        // rate samples for the sparklines
  };

  function serverNow() { return Date.now() + state.skew; }

  /** What the page asks the server for (the "view" message). */
  const view = {
    clients: { sort: 'id', order: 'desc', filter: '', room: '', offset: 0, limit: 100 },
    rooms: { filter: '', offset: 0, limit: 100 },
    closed: { offset: 0, limit: 100 },
  };

  /* Render scheduler: data changes mark parts dirty; they are drawn in one
   * animation frame, at most every MIN_FRAME_MS (about 10 renders a second),
   * however fast data arrives. Scrolling redraws its own component on the
   * next frame so virtual lists never show gaps. */
  const MIN_FRAME_MS = 100;
  const renderers = {};
  const dirty = new Set();
  let frameQueued = false;
  let lastFrame = 0;

  function invalidate(part) {
    dirty.add(part);
    if (frameQueued) return;
    frameQueued = true;
    const wait = Math.max(0, lastFrame + MIN_FRAME_MS - performance.now());
    setTimeout(() => requestAnimationFrame(drawFrame), wait);
  }
  function drawFrame() {
    frameQueued = false;
    lastFrame = performance.now();
    const parts = Array.from(dirty);
    dirty.clear();
    for (const p of parts) {
      try { renderers[p](); } catch (e) { console.error('render ' + p, e); }
    }
  }
  const nextFrameJobs = new Map();
  function onNextFrame(key, fn) {
    if (nextFrameJobs.has(key)) return;
    nextFrameJobs.set(key, fn);
    requestAnimationFrame(() => { nextFrameJobs.delete(key); fn(); });
  }

  /* ---------- WebSocket ---------- */

  const live = { ws: null, connected: false, delay: 1000, retryAt: 0, timer: null, countdown: null };

  function connect() {
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
      if (state.watch) wsSend(watchMessage(state.watch));
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

  function wsSend(obj) {
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(obj));
  }

  /** "Log out" shows only when there is a token to forget (the page
   * starts without it). */
  async function initLogout() {
    const auth = await adminAuth();
    document.body.dataset.auth = auth;
    $('.logout-form').hidden = auth !== 'token';
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
  function sendView() {
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
        trafficAdd(Array.isArray(msg.items) ? msg.items : [], msg.dropped | 0);
        break;
      case 'error':
        if (msg.code === 'unauthorized') { location.assign('/login'); return; }
        if (msg.code === 'no_such_client' || msg.code === 'no_such_room') {
          // The watch failed (the client left, the room emptied): say so, stop pretending.
          toast(msg.message || msg.code, 'error', 'Cannot watch');
          if (state.watch) { state.watch = null; renderWatching(); invalidate('clients'); invalidate('rooms'); invalidate('traffic'); }
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
    if (msg.clients) {
      clientsTable.setPage(msg.clients.total, msg.clients.offset, msg.clients.clients);
      const devices = Array.isArray(msg.clients.clients) && msg.clients.clients.some((c) => c.device);
      $('#clients-table').classList.toggle('has-devices', devices);
    }
    if (msg.rooms) roomsTable.setPage(msg.rooms.total, msg.rooms.offset, msg.rooms.rooms);
    if (msg.closed) closedTable.setPage(msg.closed.total, msg.closed.offset, msg.closed.clients);
    invalidate('datalists');
    const now = Date.now();
    for (const [id, at] of state.kicked) if (now - at > 5000) state.kicked.delete(id);
  }

  /* ===================================================================
   * 3. Overview and listeners
   * =================================================================== */

  /* Reason codes get a colour by what they mean: goodbyes are grey,
   * policing by the server amber or red, the admin purple. */
  const REASON_TONES = {
    quit: 'neutral', client_closed: 'neutral', server_shutdown: 'neutral', closed: 'neutral',
    kicked: 'purple',
    refused: 'danger', slow_consumer: 'danger', too_slow: 'danger', memory_budget: 'danger',
    stalled: 'warn', idle: 'warn', line_timeout: 'warn',
    read_failed: 'cyan', write_failed: 'cyan', connection_lost: 'cyan',
  };
  function reasonBadge(code, count) {
    code = String(code || 'unknown');
    const tone = REASON_TONES[code] || (/fail|error|lost/.test(code) ? 'cyan' : 'neutral');
    const badge = el('span', { className: 'badge tone-' + tone, text: code.replace(/_/g, ' ') });
    if (count != null) badge.append(el('span', { className: 'badge-count', text: fmtInt(count) }));
    return badge;
  }

  /* A mode's tag; a client over TLS (or WSS) says so after its mode. */
  function modeTag(mode, tls) {
    mode = String(mode || '?');
    return el('span', { className: 'mode mode-' + mode.replace(/[^a-z-]/g, ''), text: tls ? mode + '+tls' : mode });
  }

  renderers.overview = function () {
    const s = state.stats;
    if (!s) return;
    setText($('#version'), 'v' + (s.version || state.version || '?'));
    setText($('#uptime'), 'up ' + fmtDuration(s.uptime_seconds));
    setTitle($('#uptime'), 'Started ' + fmtDateTime(s.started_at));
    setText($('#ov-clients'), fmtInt(s.clients.current));
    setText($('#ov-clients-total'), fmtInt(s.clients.total));
    setText($('#ov-rooms'), fmtInt(s.rooms));
    setText($('#ov-listeners'), fmtInt(state.listeners.length));
    setText($('#ov-msg-in'), fmtRate(s.rates.messages_in));
    setText($('#ov-msg-out'), fmtRate(s.rates.messages_out));
    setText($('#ov-msg-total'), fmtCount(s.messages.in) + ' / ' + fmtCount(s.messages.out) + ' total');
    setTitle($('#ov-msg-total'), fmtInt(s.messages.in) + ' messages in, ' + fmtInt(s.messages.out) + ' out since start');
    setText($('#ov-bytes-in'), fmtBytes(s.rates.bytes_in) + '/s');
    setText($('#ov-bytes-out'), fmtBytes(s.rates.bytes_out) + '/s');
    setText($('#ov-bytes-total'), fmtBytes(s.bytes.in) + ' / ' + fmtBytes(s.bytes.out) + ' total');
    setTitle($('#ov-bytes-total'), fmtInt(s.bytes.in) + ' bytes in, ' + fmtInt(s.bytes.out) + ' out since start');

    const mem = s.memory || {};
    setText($('#ov-mem'), fmtBytes(mem.held));
    setText($('#ov-mem-budget'), mem.budget ? fmtBytes(mem.budget) : '–');
    setText($('#ov-mem-rss'), mem.rss ? fmtBytes(mem.rss) : '–');
    const frac = mem.budget ? Math.min(1, mem.held / mem.budget) : 0;
    const bar = $('#ov-mem-bar');
    bar.style.width = (frac > 0 ? Math.max(1, frac * 100) : 0).toFixed(1) + '%';
    setClass(bar, frac > 0.9 ? 'danger' : frac > 0.7 ? 'warn' : '');

    // Disconnect reasons, most frequent first.
    const box = $('#ov-disconnects');
    const entries = Object.entries(s.disconnects || {}).filter((e) => e[1] > 0).sort((a, b) => b[1] - a[1]);
    const key = JSON.stringify(entries);
    if (box._key !== key) {
      box._key = key;
      box.replaceChildren(...(entries.length ? entries.map((e) => reasonBadge(e[0], e[1])) : [el('span', { className: 'muted small', text: 'none yet' })]));
    }
    // No-break spaces inside each counter: a narrow card wraps between them.
    setText($('#ov-errors'), [
      'queue cutoffs ' + fmtInt(s.queue_cutoffs), 'refused ' + fmtInt(s.refused),
      'accept errors ' + fmtInt(s.accept_errors), 'TLS failures ' + fmtInt(s.tls_handshake_failures || 0),
    ].map((t) => t.replace(/ /g, '\u00a0')).join(' · '));

    drawSpark($('#spark-clients'), 'c');
    drawSpark($('#spark-rooms'), 'r');
    drawSpark($('#spark-msgs'), 'mi', 'mo');
    drawSpark($('#spark-bytes'), 'bi', 'bo');
  };

  /** Sparkline of the last 60 samples: one line (kin), or in and out
   * (kin, kout) on a shared scale, with the area under the last filled. */
  function drawSpark(svg, kin, kout) {
    const NS = 'http://www.w3.org/2000/svg';
    if (!svg._lines) {
      const mk = (cls) => { const n = document.createElementNS(NS, cls === 'spark-fill' ? 'path' : 'polyline'); n.setAttribute('class', cls); svg.append(n); return n; };
      svg._lines = [mk('spark-fill'), mk(kout ? 'spark-in' : 'spark-out'), kout ? mk('spark-out') : null];
    }
    const h = state.history;
    if (h.length < 2) return;
    const W = 120, H = 28;
    let lo = Infinity, hi = 0;
    for (const p of h) for (const k of [kin, kout]) if (k) { hi = Math.max(hi, p[k] || 0); lo = Math.min(lo, p[k] || 0); }
    // Rates start at zero; counts (clients, rooms) use their own range so changes show.
    if (kout) lo = 0; else { const pad = Math.max(1, (hi - lo) * 0.2); lo = Math.max(0, lo - pad); hi += pad; }
    const span = hi - lo || 1;
    const pts = (k) => h.map((p, i) => (i * W / (h.length - 1)).toFixed(1) + ',' + (H - 1 - ((p[k] || 0) - lo) / span * (H - 4)).toFixed(1)).join(' ');
    const last = pts(kout || kin);
    svg._lines[1].setAttribute('points', pts(kin));
    if (kout) svg._lines[2].setAttribute('points', last);
    svg._lines[0].setAttribute('d', 'M0,' + H + ' L' + last.replace(/ /g, ' L') + ' L' + W + ',' + H + ' Z');
  }

  /* ---------- listeners ---------- */

  /** Splits "0.0.0.0:123" or "[::]:123" into host and port. */
  function splitAddr(addr) {
    const i = String(addr).lastIndexOf(':');
    return i < 0 ? { host: String(addr), port: '' } : { host: addr.slice(0, i), port: addr.slice(i + 1) };
  }
  /** A command a user can paste to reach the listener from another machine. */
  function connectCommand(l) {
    const a = splitAddr(l.addr);
    let host = a.host.replace(/^\[|\]$/g, '');
    if (host === '0.0.0.0' || host === '::' || host === '') host = location.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    if (l.mode === 'ws') return (location.protocol === 'https:' ? 'wss://' : 'ws://') + (host.includes(':') ? '[' + host + ']' : host) + ':' + a.port + '/';
    return 'nc ' + host + ' ' + a.port;
  }

  function expiryText(l) {
    if (l.expire_after_idle_seconds == null) return { text: 'never', cls: 'cell-empty', title: 'Stays open until closed' };
    const after = fmtDuration(l.expire_after_idle_seconds);
    if (l.expires_in_seconds == null) return { text: 'idle ' + after, cls: '', title: 'Closes once it has had no clients for ' + after };
    return {
      text: 'in ' + fmtDuration(l.expires_in_seconds),
      cls: l.expires_in_seconds < 60 ? 'expiry-soon' : '',
      title: 'Unused: closes in ' + fmtDuration(l.expires_in_seconds) + ' (after ' + after + ' without clients)',
    };
  }

  const listenerRows = new Map();
  renderers.listeners = function () {
    const body = $('#listeners');
    // Newest first: a listener just opened shows at the top, by its callout.
    const list = state.listeners.slice().sort((a, b) => b.id - a.id);
    setText($('#listeners-count'), list.length ? fmtInt(list.length) : '');
    const seen = new Set();
    list.forEach((l, i) => {
      seen.add(l.id);
      let tr = listenerRows.get(l.id);
      if (!tr) {
        tr = el('tr', { data: { listenerId: l.id } });
        for (let c = 0; c < 8; c++) tr.append(el('td'));
        const cells = tr.children;
        cells[0].className = 'num dim';
        cells[2].className = 'addr addr-cell';
        cells[4].className = 'num';
        cells[7].className = 'actions';
        listenerRows.set(l.id, tr);
      }
      tr._item = l;
      const c = tr.children;
      setText(c[0], l.id);
      if (c[1]._mode !== l.mode) { c[1]._mode = l.mode; c[1].replaceChildren(modeTag(l.mode)); }
      setText(c[2], l.addr);
      setTitle(c[2], connectCommand(l));
      if (c[3]._room !== l.room) { c[3]._room = l.room; c[3].replaceChildren(el('span', { className: 'room-name', text: visible(l.room) })); setTitle(c[3], '#' + visible(l.room)); }
      setText(c[4], fmtInt(l.clients));
      if (c[5]._origin !== l.origin) {
        c[5]._origin = l.origin;
        c[5].replaceChildren(el('span', { className: 'badge ' + (l.origin === 'api' ? 'tone-info' : 'tone-neutral'), text: l.origin }));
      }
      const ex = expiryText(l);
      setText(c[6], ex.text);
      setTitle(c[6], ex.title);
      setClass(c[6], ex.cls);
      const key = l.origin + l.mode;
      if (c[7]._key !== key) {
        c[7]._key = key;
        const btns = [];
        if (l.mode !== 'ws') btns.push(el('button', { className: 'btn btn-xs copy', type: 'button', text: 'Copy', title: 'Copy a command to connect', attrs: { 'aria-label': 'Copy the connect command for listener ' + l.id } }));
        if (l.origin === 'api') btns.push(el('button', { className: 'btn btn-xs btn-danger close', type: 'button', text: 'Close', attrs: { 'aria-label': 'Close listener ' + l.id } }));
        c[7].replaceChildren(...btns);
      }
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    for (const [id, tr] of listenerRows) if (!seen.has(id)) { tr.remove(); listenerRows.delete(id); }
    if (state.stats) setText($('#ov-listeners'), fmtInt(list.length));
  };

  function initListeners() {
    const form = $('#listener-form');
    const toggle = $('#open-listener');
    const err = $('#listener-error');
    const show = (open) => {
      form.hidden = !open;
      toggle.setAttribute('aria-expanded', String(open));
      if (open) { err.hidden = true; $('#listener-port').focus(); }
    };
    toggle.addEventListener('click', () => show(form.hidden));
    $('#listener-cancel').addEventListener('click', () => { show(false); toggle.focus(); });
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') { show(false); toggle.focus(); } });

    const fail = (input, message) => {
      err.textContent = message;
      err.hidden = false;
      if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    };
    form.addEventListener('input', (e) => { e.target.removeAttribute('aria-invalid'); });
    // Device options are a raw listener's.
    const modeSelect = $('#listener-mode');
    const showDevice = () => { $('#listener-device-field').hidden = modeSelect.value !== 'raw'; };
    modeSelect.addEventListener('change', showDevice);
    showDevice();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const portIn = $('#listener-port'), addrIn = $('#listener-addr'), roomIn = $('#listener-room'), expIn = $('#listener-expiry');
      const portText = portIn.value.trim();
      const port = portText === '' ? 0 : Number(portText);
      if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(portIn, 'The port is a whole number from 1 to 65535, or empty (or 0) for any free port.');
      let host = addrIn.value.trim() || '0.0.0.0';
      if (host.includes(':') && !host.startsWith('[')) host = '[' + host + ']'; // IPv6
      const room = roomIn.value.trim().replace(/^#/, '') || 'lobby';
      const body = { mode: $('#listener-mode').value, addr: host + ':' + port, room };
      const device = $('#listener-device').value.trim();
      if (body.mode === 'raw' && device) body.device = device;
      const expText = expIn.value.trim();
      if (expText !== '') {
        const exp = Number(expText);
        if (!Number.isInteger(exp) || exp < 1) return fail(expIn, 'Expiry is a whole number of seconds (1 or more), or empty for never.');
        body.expire_after_idle_seconds = exp;
      }
      const submit = $('#listener-submit');
      submit.disabled = true;
      try {
        const l = await api('POST', '/api/v1/listeners', body);
        if (l && l.id != null && !state.listeners.some((x) => x.id === l.id)) state.listeners = state.listeners.concat([l]);
        invalidate('listeners');
        show(false);
        if (l && l.addr) {
          setText($('#listener-created-addr'), l.mode + '://' + l.addr);
          setText($('#listener-created-cmd'), connectCommand(l));
          $('#listener-created').hidden = false;
          $('#listener-created-copy').focus();
        }
      } catch (ex) {
        fail(null, ex.message);
      } finally {
        submit.disabled = false;
      }
    });

    $('#listener-created-copy').addEventListener('click', () => copyText($('#listener-created-cmd').textContent));
    $('#listener-created-close').addEventListener('click', () => { $('#listener-created').hidden = true; });

    $('#listeners').addEventListener('click', async (e) => {
      const btn = e.target.closest('button');
      const tr = btn && btn.closest('tr');
      if (!tr || !tr._item) return;
      const l = tr._item;
      if (btn.classList.contains('copy')) copyText(connectCommand(l));
      if (btn.classList.contains('close')) {
        btn.disabled = true;
        try {
          await api('DELETE', '/api/v1/listeners/' + encodeURIComponent(l.id));
          state.listeners = state.listeners.filter((x) => x.id !== l.id);
          invalidate('listeners');
          toast(l.mode + '://' + l.addr + ' is closed.', 'ok', 'Listener closed');
        } catch (ex) {
          btn.disabled = false;
          toast(ex.message, 'error', 'Could not close the listener');
        }
      }
    });
  }

  /* ===================================================================
   * 4. Virtual tables
   *
   * One <table> per list: a sticky <thead>, a spacer <tbody> above, the
   * real rows in <tbody id=...>, a spacer <tbody> below. Only the visible
   * rows (plus a few) exist; the server pages, so the table asks for the
   * window around the visible rows and shows placeholders until it comes.
   * Rows are keyed and reused so that focus and hover survive updates.
   * =================================================================== */

  function VirtualTable(o) {
    this.o = o;
    this.scroll = o.scroll;
    this.rowH = 37;          // measured after the first rows render
    this.total = 0;
    this.offset = 0;
    this.items = [];
    this.rows = new Map();
    this.req = { offset: 0, limit: 100 };
    this.stale = false;

    // Widths go on the header cells (table-layout: fixed reads the first
    // row), so a column hidden by a media query (.hide-md, .hide-sm) takes
    // its width with it.
    const table = o.table;
    const head = el('tr');
    this.ths = [];
    for (const c of o.columns) {
      const th = el('th', { className: (c.num ? 'num ' : '') + (c.hide ? 'hide-' + c.hide : '') + (c.col ? ' ' + c.col : ''), attrs: { scope: 'col' } });
      if (c.width) th.style.width = c.width + 'px';
      if (c.sort) {
        th.append(el('button', { className: 'sort', type: 'button', text: c.label, data: { sort: c.sort }, title: 'Sort by ' + c.label.toLowerCase() }));
      } else {
        th.append(c.label ? document.createTextNode(c.label) : el('span', { className: 'sr-only', text: 'Actions' }));
      }
      this.ths.push(th);
      head.append(th);
    }
    // Spacer rows only give height. One cell, no colspan: a colspan counting
    // hidden columns would add phantom columns to the fixed layout.
    const spacer = () => {
      const td = el('td');
      return { body: el('tbody', { className: 'spacer', attrs: { 'aria-hidden': 'true' } }, el('tr', null, td)), td };
    };
    const top = spacer(), bottom = spacer();
    this.topTd = top.td;
    this.bottomTd = bottom.td;
    this.thead = el('thead', null, head);
    this.tbody = el('tbody', { attrs: { id: o.bodyId } });
    table.replaceChildren(this.thead, top.body, this.tbody, bottom.body);
    this.empty = $('.vempty', this.scroll);

    if (o.onSort) {
      this.thead.addEventListener('click', (e) => {
        const b = e.target.closest('button[data-sort]');
        if (b) o.onSort(b.dataset.sort);
      });
    }
    const redraw = () => onNextFrame(this, () => this.render());
    this.scroll.addEventListener('scroll', redraw, { passive: true });
    if (window.ResizeObserver) new ResizeObserver(redraw).observe(this.scroll);
    this.updateSortHeader();
  }

  VirtualTable.prototype.setPage = function (total, offset, items) {
    this.total = Math.max(0, total | 0);
    this.offset = Math.max(0, offset | 0);
    this.items = Array.isArray(items) ? items : [];
    this.stale = false;
    invalidate(this.o.name);
  };

  /** Forget the position (new sort or filter): back to the top, ask again. */
  VirtualTable.prototype.reset = function () {
    this.scroll.scrollTop = 0;
    this.stale = true;
    this.req = { offset: 0, limit: this.req.limit };
    this.o.onWindow(this.req);
    this.render();
  };

  VirtualTable.prototype.updateSortHeader = function () {
    const s = this.o.sortState && this.o.sortState();
    this.o.columns.forEach((c, i) => {
      if (!c.sort) return;
      if (s && s.sort === c.sort) this.ths[i].setAttribute('aria-sort', s.order === 'asc' ? 'ascending' : 'descending');
      else this.ths[i].removeAttribute('aria-sort');
    });
  };

  /* The box fits the rows (a short list leaves no blank area under it),
   * or the empty message, up to the CSS max-height, past which it
   * scrolls; returns the height the rows are seen in. */
  const EMPTY_H = 72;
  VirtualTable.prototype.fit = function (headH) {
    const sc = this.scroll;
    // Borders, and the scroll bar of a table wider than its panel.
    const frame = sc.offsetHeight - sc.clientHeight;
    const want = Math.ceil(headH + (this.total ? this.total * this.rowH : EMPTY_H) + frame);
    if (this.height !== want) { this.height = want; sc.style.height = want + 'px'; }
    const max = parseFloat(getComputedStyle(sc).maxHeight);
    return (max > 0 ? Math.min(want, max) : want) - frame;
  };

  VirtualTable.prototype.render = function () {
    const sc = this.scroll, o = this.o, rowH = this.rowH;
    const headH = this.thead.offsetHeight || 34;
    const viewRows = Math.max(1, Math.ceil((this.fit(headH) - headH) / rowH));
    const total = this.total;
    const first = Math.min(Math.floor(sc.scrollTop / rowH), Math.max(0, total - 1));
    const start = Math.max(0, first - 3);
    const end = Math.min(total, first + viewRows + 3);

    this.ensureWindow(first, Math.min(total, first + viewRows), viewRows);

    this.topTd.style.height = start * rowH + 'px';
    this.bottomTd.style.height = Math.max(0, total - end) * rowH + 'px';

    const body = this.tbody;
    const seen = new Set();
    let pos = 0;
    for (let i = start; i < end; i++) {
      const item = this.items[i - this.offset];
      const key = item && i >= this.offset ? o.key(item) : '\u0000' + i;
      let tr = this.rows.get(key);
      if (!tr) {
        tr = item ? this.createRow(item) : this.placeholder();
        this.rows.set(key, tr);
      }
      if (item) { tr._item = item; for (let c = 0; c < o.columns.length; c++) o.columns[c].render(tr.children[c], item, tr); if (o.decorate) o.decorate(tr, item); }
      seen.add(key);
      if (body.children[pos] !== tr) body.insertBefore(tr, body.children[pos] || null);
      pos++;
    }
    for (const [key, tr] of this.rows) if (!seen.has(key)) { tr.remove(); this.rows.delete(key); }

    if (this.empty) {
      const none = total === 0;
      this.empty.hidden = !none;
      if (none) setText(this.empty, o.emptyText());
    }
    sc.classList.toggle('is-stale', this.stale);

    // Measure the real row height once (fonts and zoom decide it).
    if (!this.measured && body.firstChild && !body.firstChild.classList.contains('placeholder')) {
      const h = body.firstChild.getBoundingClientRect().height;
      this.measured = true;
      if (h > 10 && Math.abs(h - rowH) > 0.5) { this.rowH = h; this.render(); }
    }
  };

  VirtualTable.prototype.createRow = function (item) {
    const tr = el('tr');
    for (const c of this.o.columns) {
      const td = el('td', { className: (c.num ? 'num ' : '') + (c.cls || '') + (c.hide ? ' hide-' + c.hide : '') });
      if (c.init) c.init(td);
      tr.append(td);
    }
    if (this.o.initRow) this.o.initRow(tr, item);
    return tr;
  };

  VirtualTable.prototype.placeholder = function () {
    const tr = el('tr', { className: 'placeholder', attrs: { 'aria-hidden': 'true' } });
    for (let i = 0; i < this.o.columns.length; i++) tr.append(el('td'));
    return tr;
  };

  /** Asks the server for a new window when the visible rows near its edge. */
  VirtualTable.prototype.ensureWindow = function (first, last, viewRows) {
    const r = this.req;
    const margin = Math.max(50, viewRows * 3);
    const atTop = r.offset === 0;
    const atEnd = r.offset + r.limit >= this.total;
    const covered = (first >= r.offset + (atTop ? 0 : 5)) && (last <= r.offset + r.limit - (atEnd ? 0 : 5));
    const wantLimit = Math.min(500, viewRows + 2 * margin);
    if (covered && r.limit >= Math.min(wantLimit, 100)) return;
    const offset = Math.max(0, first - margin);
    if (offset === r.offset && wantLimit === r.limit) return;
    this.req = { offset, limit: Math.max(wantLimit, 50) };
    this.o.onWindow(this.req);
  };

  /* ---------- clients ---------- */

  /** A cell that shows a formatted number and its exact value on hover. */
  const numCell = (get, fmt) => (td, c) => { const v = get(c); setText(td, fmt(v)); setTitle(td, fmtInt(v)); };
  /** Message count; the tooltip adds the bytes (their column hides on narrow screens). */
  const msgCell = (get, getBytes) => (td, c) => { const v = get(c); setText(td, fmtCount(v)); setTitle(td, fmtInt(v) + ' messages, ' + fmtBytes(getBytes(c))); };
  const bytesCell = (get) => (td, c) => { const v = get(c); setText(td, fmtBytes(v)); setTitle(td, fmtInt(v) + ' bytes'); };
  const agoCell = (get, what) => (td, c) => { const v = get(c); setText(td, fmtAgo(v)); setTitle(td, v ? what + ' ' + fmtDateTime(v) : ''); };
  const textCell = (get) => (td, c) => { const v = visible(get(c)); setText(td, v); setTitle(td, v); };
  /** A client's mode; a registered device shows as a device. */
  const modeCell = (td, c) => {
    const mode = c.device ? 'device' : c.mode;
    const shown = mode + (c.tls ? '+tls' : '');
    if (td._mode !== shown) { td._mode = shown; td.replaceChildren(modeTag(mode, c.tls)); }
    setTitle(td, c.device ? 'a device on a raw listener, registered as ' + visible(c.device.id) : '');
  };

  /** A client's name, with a check mark if it logged in; a device's
   *  tooltip gives its identity, last heartbeat and last data. */
  const nameCell = (td, c) => {
    const d = c.device;
    const name = visible(c.logged_in ? c.name + ' ✓' : c.name);
    // What the devices file calls a device follows its name, dimmed.
    const label = d && d.label ? visible(d.label) : '';
    const shown = label ? name + '\u0000' + label : name;
    if (td._text !== shown) {
      td._text = shown;
      if (label) td.replaceChildren(el('span', { className: 'cell-line', text: name }), el('span', { className: 'device-label', text: label }));
      else td.textContent = name;
    }
    setTitle(td, d
      ? name + (label ? '\n' + label : '') + '\nclient ' + c.id + ', device ' + visible(d.id) + '\nregistered ' + fmtDateTime(d.registered_at)
        + '\nlast heartbeat ' + fmtAgo(d.last_heartbeat) + ' (' + fmtInt(d.heartbeats) + ' in all)'
        + '\nlast data ' + fmtAgo(d.last_data)
      : name + '\nclient ' + c.id);
  };
  /** A device's last heartbeat; nothing for other clients. */
  const heartbeatCell = (td, c) => {
    const d = c.device;
    setText(td, d ? fmtAgo(d.last_heartbeat) : '');
    setTitle(td, d ? (d.last_heartbeat ? 'Last heartbeat ' + fmtDateTime(d.last_heartbeat) : 'No heartbeat yet') + ', ' + fmtInt(d.heartbeats) + ' in all; last data ' + fmtAgo(d.last_data) : '');
  };

  function roomsText(rooms) {
    if (!Array.isArray(rooms) || !rooms.length) return '';
    const shown = rooms.slice(0, 3).map((r) => '#' + visible(r)).join(', ');
    return rooms.length > 3 ? shown + ' +' + (rooms.length - 3) : shown;
  }

  /* Fixed widths, as narrow as their header (and its sort arrow) or their
   * values allow: Name and Rooms, without one, share what is left, so
   * that a desktop shows a device's full name and its room (the ID, in
   * the name's tooltip too, gives way first). */
  const clientColumns = [
    { label: 'ID', sort: 'id', width: 56, num: true, cls: 'dim', hide: 'lg', render: (td, c) => setText(td, c.id) },
    { label: 'Name', sort: 'name', cls: 'name name-cell key', col: 'key', render: nameCell },
    { label: 'Address', sort: 'addr', width: 132, cls: 'mono', render: textCell((c) => c.addr) },
    { label: 'Mode', sort: 'mode', width: 68, render: modeCell },
    { label: 'Rooms', cls: 'rooms-cell', col: 'col-rooms', render: (td, c) => { setText(td, roomsText(c.rooms)); setTitle(td, (c.rooms || []).map((r) => '#' + visible(r)).join('\n')); } },
    { label: 'Connected', sort: 'connected', width: 88, num: true, hide: 'md', render: agoCell((c) => c.connected_at, 'Connected') },
    { label: 'Active', sort: 'activity', width: 88, num: true, render: agoCell((c) => c.last_activity, 'Last activity') },
    // Shown while the page of clients holds a device.
    { label: 'Heartbeat', width: 96, num: true, cls: 'heartbeat col-heartbeat', col: 'col-heartbeat', hide: 'md', render: heartbeatCell },
    { label: 'Msgs in', sort: 'messages_in', width: 70, num: true, render: msgCell((c) => c.messages_in, (c) => c.bytes_in) },
    { label: 'Msgs out', sort: 'messages_out', width: 76, num: true, render: msgCell((c) => c.messages_out, (c) => c.bytes_out) },
    { label: 'Bytes in', sort: 'bytes_in', width: 78, num: true, hide: 'sm', render: bytesCell((c) => c.bytes_in) },
    { label: 'Bytes out', sort: 'bytes_out', width: 82, num: true, hide: 'sm', render: bytesCell((c) => c.bytes_out) },
    {
      label: 'Queue', sort: 'queue', width: 84, num: true,
      init(td) {
        const fill = el('span');
        td.append(el('div', { className: 'queue' }, el('div', { className: 'queue-bar' }, fill), el('span', { className: 'queue-pct num' })));
        td._fill = fill;
        td._pct = td.firstChild.lastChild;
      },
      render(td, c) {
        const frac = c.queue_limit ? Math.min(1, (c.queue_bytes || 0) / c.queue_limit) : 0;
        const w = (frac > 0 ? Math.max(3, frac * 100) : 0).toFixed(0) + '%';
        if (td._w !== w) { td._w = w; td._fill.style.width = w; }
        setClass(td._fill, frac > 0.8 ? 'danger' : frac > 0.5 ? 'warn' : '');
        setText(td._pct, frac === 0 ? '0%' : frac < 0.01 ? '<1%' : Math.round(frac * 100) + '%');
        setTitle(td, fmtBytes(c.queue_bytes) + ' queued of ' + fmtBytes(c.queue_limit) + ' (queue hard limit)');
      },
    },
    {
      label: '', width: 108, cls: 'actions',
      init(td) {
        td.append(
          el('button', { className: 'btn btn-xs watch', type: 'button', text: 'Watch' }),
          el('button', { className: 'btn btn-xs btn-danger kick', type: 'button', text: 'Kick' }));
      },
      render(td, c) {
        if (td._name !== c.name) {
          td._name = c.name;
          td.firstChild.setAttribute('aria-label', 'Watch ' + visible(c.name));
          td.lastChild.setAttribute('aria-label', 'Kick ' + visible(c.name));
        }
        td.lastChild.disabled = state.kicked.has(c.id);
      },
    },
  ];

  const clientsTable = new VirtualTable({
    name: 'clients',
    scroll: $('#clients-scroll'),
    table: $('#clients-table'),
    bodyId: 'clients',
    columns: clientColumns,
    key: (c) => c.id,
    initRow: (tr, c) => { tr.dataset.clientId = c.id; },
    decorate: (tr, c) => {
      const watched = !!(state.watch && state.watch.client === c.id);
      if (tr._watched !== watched) { tr._watched = watched; tr.classList.toggle('is-watched', watched); }
      const gone = state.kicked.has(c.id);
      if (tr._gone !== gone) { tr._gone = gone; tr.classList.toggle('is-gone', gone); }
    },
    sortState: () => view.clients,
    onSort(key) {
      const v = view.clients;
      if (v.sort === key) v.order = v.order === 'asc' ? 'desc' : 'asc';
      else { v.sort = key; v.order = key === 'name' || key === 'addr' || key === 'mode' ? 'asc' : 'desc'; }
      storage.set('clients.sort', v.sort + ' ' + v.order);
      clientsTable.updateSortHeader();
      clientsTable.reset();
    },
    onWindow(req) { view.clients.offset = req.offset; view.clients.limit = req.limit; sendView(); },
    emptyText: () => (view.clients.filter || view.clients.room ? 'No clients match the filter' : 'No clients connected'),
  });
  renderers.clients = () => {
    clientsTable.render();
    setText($('#clients-count'), clientsTable.total || view.clients.filter || view.clients.room ? fmtInt(clientsTable.total) : '');
  };

  /* ---------- rooms ---------- */

  const roomsTable = new VirtualTable({
    name: 'rooms',
    scroll: $('#rooms-scroll'),
    table: $('#rooms-table'),
    bodyId: 'rooms',
    columns: [
      {
        label: 'Room', cls: 'name key', col: 'key',
        init: (td) => td.append(el('span', { className: 'room-name' })),
        render: (td, r) => { setText(td.firstChild, visible(r.name)); setTitle(td, '#' + visible(r.name) + ': click to watch'); },
      },
      { label: 'Members', width: 96, num: true, render: numCell((r) => r.members, fmtInt) },
      { label: 'Messages', width: 100, num: true, render: numCell((r) => r.messages, fmtCount) },
      { label: 'Rate', width: 92, num: true, render: (td, r) => setText(td, fmtRate(r.rate)) },
    ],
    key: (r) => r.name,
    initRow: (tr, r) => {
      tr.dataset.room = r.name;
      tr.tabIndex = 0;
      tr.className = 'clickable';
      tr.setAttribute('aria-label', 'Watch room ' + visible(r.name));
    },
    decorate: (tr, r) => {
      const watched = !!(state.watch && state.watch.room === r.name);
      if (tr._watched !== watched) { tr._watched = watched; tr.classList.toggle('is-watched', watched); }
    },
    onWindow(req) { view.rooms.offset = req.offset; view.rooms.limit = req.limit; sendView(); },
    emptyText: () => (view.rooms.filter ? 'No rooms match the filter' : 'No rooms yet'),
  });
  renderers.rooms = () => {
    roomsTable.render();
    setText($('#rooms-count'), fmtInt(roomsTable.total));
  };

  /* ---------- recent disconnects ---------- */

  const closedTable = new VirtualTable({
    name: 'closed',
    scroll: $('#closed-scroll'),
    table: $('#closed-table'),
    bodyId: 'closed',
    columns: [
      { label: 'Closed', width: 88, cls: 'mono', render: (td, c) => { setText(td, fmtClock(c.closed_at, false)); setTitle(td, fmtDateTime(c.closed_at) + ' (' + fmtAgo(c.closed_at) + ')'); } },
      { label: 'Name', width: 220, cls: 'name name-cell key', col: 'key', render: textCell((c) => c.name) },
      { label: 'Address', width: 150, cls: 'mono', render: textCell((c) => c.addr) },
      { label: 'Mode', width: 72, render: modeCell },
      { label: 'Lasted', width: 96, num: true, render: (td, c) => setText(td, c.connected_at ? fmtDuration((c.closed_at - c.connected_at) / 1000) : '–') },
      { label: 'Msgs in/out', width: 110, num: true, render: (td, c) => { setText(td, fmtCount(c.messages_in) + ' / ' + fmtCount(c.messages_out)); setTitle(td, fmtBytes(c.bytes_in) + ' in, ' + fmtBytes(c.bytes_out) + ' out'); } },
      {
        label: 'Reason', cls: 'reason reason-cell',
        init: (td) => td.append(el('span'), ' ', el('span', { className: 'reason-text' })),
        render(td, c) {
          if (td._code !== c.reason_code) { td._code = c.reason_code; td.replaceChild(reasonBadge(c.reason_code), td.firstChild); }
          setText(td.lastChild, visible(c.reason));
          setTitle(td, visible(c.reason));
        },
      },
    ],
    key: (c) => c.id + ':' + c.closed_at,
    initRow: (tr, c) => { tr.dataset.closedId = c.id; },
    onWindow(req) { view.closed.offset = req.offset; view.closed.limit = req.limit; sendView(); },
    emptyText: () => 'No client has disconnected yet',
  });
  renderers.closed = () => {
    closedTable.render();
    setText($('#closed-count'), closedTable.total ? fmtInt(closedTable.total) : '');
  };

  function initTables() {
    const saved = (storage.get('clients.sort') || '').split(' ');
    const SORTS = ['id', 'name', 'addr', 'mode', 'connected', 'activity', 'messages_in', 'messages_out', 'bytes_in', 'bytes_out', 'queue'];
    if (SORTS.includes(saved[0]) && (saved[1] === 'asc' || saved[1] === 'desc')) {
      view.clients.sort = saved[0];
      view.clients.order = saved[1];
      clientsTable.updateSortHeader();
    }

    // Filters: debounced so typing sends one view message, not one per key.
    const debounce = (fn, ms) => { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; };
    const onFilter = debounce(() => {
      view.clients.filter = $('#clients-filter').value.trim();
      view.clients.room = $('#clients-room').value.trim().replace(/^#/, '');
      clientsTable.reset();
    }, 200);
    $('#clients-filter').addEventListener('input', onFilter);
    $('#clients-room').addEventListener('input', onFilter);
    $('#rooms-filter').addEventListener('input', debounce(() => {
      view.rooms.filter = $('#rooms-filter').value.trim().replace(/^#/, '');
      roomsTable.reset();
    }, 200));

    $('#clients').addEventListener('click', (e) => {
      const btn = e.target.closest('button');
      const tr = btn && btn.closest('tr');
      if (!tr || !tr._item) return;
      const c = tr._item;
      if (btn.classList.contains('watch')) watchTarget({ client: c.id, name: c.name }, true);
      else if (btn.classList.contains('kick')) openKick(c);
    });

    const roomsBody = $('#rooms');
    const watchRow = (tr) => { if (tr && tr.dataset.room != null) watchTarget({ room: tr.dataset.room }, true); };
    roomsBody.addEventListener('click', (e) => watchRow(e.target.closest('tr')));
    roomsBody.addEventListener('keydown', (e) => {
      const tr = e.target.closest('tr');
      if (!tr) return;
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); watchRow(tr); }
      if (e.key === 'ArrowDown' && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
      if (e.key === 'ArrowUp' && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
    });
  }

  /* Datalists for the room filter and the send target, from the current pages. */
  renderers.datalists = function () {
    const rooms = roomsTable.items.map((r) => r.name);
    const names = clientsTable.items.slice(0, 100).map((c) => c.name);
    const key = rooms.join('\u0000') + '\u0001' + names.join('\u0000');
    if (key === renderers.datalists.key) return;
    renderers.datalists.key = key;
    const opt = (v) => { const o = document.createElement('option'); o.value = v; return o; };
    $('#room-list').replaceChildren(...rooms.slice(0, 200).map(opt));
    $('#target-list').replaceChildren(...rooms.slice(0, 100).map((r) => opt('#' + r)), ...names.map(opt));
    $('#watch-lobby').hidden = !!state.watch || !rooms.includes('lobby');
  };

  /* ===================================================================
   * 5. Traffic
   *
   * Items live in T.items (at most MAX_ITEMS, oldest dropped). The list
   * is virtualised with variable row heights: each item's height is
   * estimated, then measured once it has been on screen; positions are
   * prefix sums. When the user scrolls up, the view stays anchored to
   * the item at the top while new items arrive and old ones are dropped;
   * at the bottom it follows the newest item.
   * =================================================================== */

  const MAX_ITEMS = 5000;
  const MAX_HELD = 48 * 1024 * 1024;   // also cap the text kept, for 16 KiB payloads
  const TEXT_COLLAPSED_CHARS = 1200;
  const TEXT_COLLAPSED_LINES = 16;
  const BINARY_COLLAPSED_CHARS = 256;
  const HEX_COLLAPSED_BYTES = 256;     // in the Hex view; Both shows 64 under the text
  const hexLimit = () => (T.view === 'both' ? 64 : HEX_COLLAPSED_BYTES);
  const OVERSCAN = 400;                // px rendered above and below the viewport

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
  };

  function recordSize(r) { return (r.b64 ? r.b64.length : 0) + (r.text ? r.text.length * 2 : 0) + 200; }

  function trafficAdd(list, dropped) {
    T.droppedServer += dropped;
    T.arrivals += list.length + dropped;
    const target = T.paused ? T.pending : T.items;
    for (const it of list) {
      const r = {
        seq: ++T.seq,
        at: Number(it.at) || Date.now(),
        room: it.room == null ? null : String(it.room),
        from: it.from == null ? '' : String(it.from),
        fromId: it.from_id,
        to: it.to == null ? null : String(it.to),
        size: Number(it.size) || 0,
        b64: typeof it.bytes === 'string' ? it.bytes : '',
        text: typeof it.text === 'string' ? it.text : null,
        h: 0,
        open: false,
      };
      r.weight = recordSize(r);
      T.held += r.weight;
      target.push(r);
    }
    if (!T.follow && !T.paused) T.newBelow += list.length;
    trimTraffic();
    invalidate('traffic');
  }

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

  function addMark(text) {
    if (!T.items.length && !T.pending.length) return;
    const r = { seq: ++T.seq, mark: true, text, at: Date.now(), h: 0, weight: 100 };
    (T.paused ? T.pending : T.items).push(r);
    T.held += r.weight;
    trimTraffic();
    invalidate('traffic');
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

  /* ---------- rendering one item ---------- */

  /* Characters that would be invisible, control the terminal, or reorder
   * text (bidi overrides) are drawn as visible placeholders instead. */
  function controlPicture(cp) {
    if (cp < 0x20) return String.fromCharCode(0x2400 + cp);      // ␀ … ␟
    if (cp === 0x7f) return '\u2421';                             // ␡
    if (cp < 0xa0) return cp >= 0x80 ? '\\u' + HEX[0] + HEX[cp] : null;
    if (cp === 0xad || cp === 0x061c || cp === 0x200b || cp === 0x200e || cp === 0x200f ||
        (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp === 0xfeff ||
        (cp >= 0xfff9 && cp <= 0xfffb)) {
      return 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
    }
    return null;
  }

  /** Appends text to `out`: plain runs as text nodes, placeholders as
   * spans (.ctl for control pictures, .bad for invalid bytes). Consecutive
   * placeholders of one kind share a span, so binary stays a few nodes. */
  function TextSink(out, maxChars, maxLines, breakLines) {
    this.out = out; this.maxChars = maxChars; this.maxLines = maxLines; this.breakLines = breakLines;
    this.run = ''; this.special = ''; this.kind = ''; this.chars = 0; this.lines = 1; this.full = false;
  }
  TextSink.prototype.flush = function () {
    if (this.special) {
      const span = el('span', { className: this.kind, text: this.special });
      if (this.kind === 'bad') span.title = 'not valid UTF-8';
      this.out.append(span);
      this.special = '';
    }
    if (this.run) { this.out.append(this.run); this.run = ''; }
  };
  TextSink.prototype.check = function () {
    if (this.chars >= this.maxChars || this.lines > this.maxLines) this.full = true;
    return this.full;
  };
  TextSink.prototype.mark = function (kind, text) {
    if (this.run || this.kind !== kind) { this.flush(); this.kind = kind; }
    this.special += text;
  };
  TextSink.prototype.plain = function (ch) {
    if (this.special) this.flush();
    this.run += ch;
  };
  TextSink.prototype.cp = function (cp, ch) {
    if (this.check()) return;
    this.chars++;
    const pic = controlPicture(cp);
    if (pic === null) { this.plain(ch); return; }
    this.mark('ctl', pic);
    if (cp === 10 && this.breakLines) { this.plain('\n'); this.lines++; }
  };
  TextSink.prototype.bad = function (b) {
    if (this.check()) return;
    this.chars++;
    this.mark('bad', '\\x' + HEX[b]);
  };

  /** Walks bytes as UTF-8: valid sequences become characters, every invalid byte a red \xHH. */
  function decodeLossy(bytes, sink) {
    const n = bytes.length;
    let i = 0;
    while (i < n && !sink.full) {
      const b = bytes[i];
      let len = 0, min = 0, cp = 0;
      if (b < 0x80) { sink.cp(b, String.fromCharCode(b)); i++; continue; }
      if (b >= 0xc2 && b <= 0xdf) { len = 2; min = 0x80; cp = b & 0x1f; }
      else if (b >= 0xe0 && b <= 0xef) { len = 3; min = 0x800; cp = b & 0x0f; }
      else if (b >= 0xf0 && b <= 0xf4) { len = 4; min = 0x10000; cp = b & 0x07; }
      let ok = len > 0 && i + len <= n;
      for (let k = 1; ok && k < len; k++) {
        const c = bytes[i + k];
        if ((c & 0xc0) !== 0x80) ok = false;
        else cp = (cp << 6) | (c & 0x3f);
      }
      if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
      if (!ok) { sink.bad(b); i++; continue; }
      sink.cp(cp, String.fromCodePoint(cp));
      i += len;
    }
    sink.flush();
  }

  /** Builds the three columns of a hex dump: offsets, hex pairs, ASCII. */
  function hexDump(bytes, limit, perRow) {
    perRow = perRow || 16;
    const n = Math.min(bytes.length, limit);
    const off = [], hex = [], ascii = [];
    for (let r = 0; r < n; r += perRow) {
      off.push(r.toString(16).toUpperCase().padStart(4, '0'));
      const pairs = [];
      let a = '';
      for (let j = r; j < Math.min(r + perRow, n); j++) {
        const b = bytes[j];
        pairs.push(HEX[b]);
        a += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '·';
      }
      hex.push(pairs.join(' '));
      ascii.push(a);
    }
    return { off: off.join('\n'), hex: hex.join('\n'), ascii: ascii.join('\n') };
  }

  /** CRC-16/MODBUS of `bytes[0..end]`. */
  function crc16(bytes, end) {
    let crc = 0xFFFF;
    for (let i = 0; i < end; i++) {
      crc ^= bytes[i];
      for (let k = 0; k < 8; k++) crc = (crc & 1) ? (crc >>> 1) ^ 0xA001 : crc >>> 1;
    }
    return crc;
  }

  /** With the CRC16 check on: a tag saying whether a message is a Modbus
   *  RTU frame whose CRC holds (its last two bytes, low byte first). */
  function crcTag(r, bytes) {
    if (!T.crc || r.size !== bytes.length) return null;
    const n = bytes.length;
    const ok = n >= 4 && crc16(bytes, n - 2) === (bytes[n - 2] | (bytes[n - 1] << 8));
    return el('span', {
      className: 'ti-tag ' + (ok ? 'crc-ok' : 'crc-bad'),
      text: ok ? 'CRC ✓' : 'CRC ✗',
      title: ok ? 'A Modbus RTU frame: its CRC-16 holds' : 'Not a Modbus RTU frame, or its CRC-16 fails',
    });
  }

  function buildItem(r) {
    if (r.mark) return el('div', { className: 'traffic-mark', attrs: { role: 'separator' }, text: r.text });

    const bytes = recordBytes(r);
    const binary = r.text === null;
    const head = el('div', { className: 'ti-head' },
      el('time', { className: 'ti-time', text: fmtClock(r.at), attrs: { datetime: new Date(r.at).toISOString() }, title: fmtDateTime(r.at) }),
      el('button', { className: 'ti-from', type: 'button', text: visible(r.from) || '?', title: r.fromId != null ? 'Watch ' + visible(r.from) + ' (client ' + r.fromId + ')' : '', data: r.fromId != null ? { fromId: r.fromId, name: r.from } : null }),
      r.room != null ? el('span', { className: 'ti-dest', text: '#' + visible(r.room) })
        : r.to != null ? el('span', { className: 'ti-dest dm', text: '→ ' + visible(r.to) }) : null,
      binary ? el('span', { className: 'ti-tag', text: 'binary', title: 'Not valid UTF-8' }) : null,
      crcTag(r, bytes),
      el('span', { className: 'ti-size', text: fmtBytes(r.size), title: fmtInt(r.size) + ' bytes' }));

    const body = el('div', { className: 'ti-body' });
    // Text view.
    const text = el('div', { className: 'text' });
    // Binary is read in the hex view; its text view is kept short until expanded.
    const maxChars = r.open ? Infinity : binary ? BINARY_COLLAPSED_CHARS : TEXT_COLLAPSED_CHARS;
    const sink = new TextSink(text, maxChars, r.open ? Infinity : TEXT_COLLAPSED_LINES, !binary);
    if (!binary) {
      for (const ch of r.text) { sink.cp(ch.codePointAt(0), ch); if (sink.full) break; }
      sink.flush();
    } else {
      decodeLossy(bytes, sink);
    }
    if (!r.size) text.append(el('span', { className: 'cell-empty', text: '(empty)' }));
    body.append(text);
    // Hex view.
    const limit = r.open ? bytes.length : hexLimit();
    const dump = hexDump(bytes, limit, T.hexRow);
    body.append(el('div', { className: 'hexdump' },
      el('div', { className: 'off', text: dump.off, attrs: { 'aria-hidden': 'true' } }),
      el('div', { className: 'hex', text: dump.hex }),
      el('div', { className: 'ascii', text: dump.ascii, attrs: { 'aria-hidden': 'true' } })));

    const clipped = sink.full || bytes.length > limit;
    if (clipped || r.open) {
      body.append(el('button', {
        className: 'ti-more', type: 'button', data: { seq: r.seq },
        text: r.open ? 'Show less' : 'Show all ' + fmtBytes(bytes.length),
      }));
    }
    if (r.size > bytes.length) {
      body.append(el('div', { className: 'ti-note', text: 'The server keeps the first ' + fmtBytes(bytes.length) + ' of ' + fmtBytes(r.size) + '.' }));
    }
    return el('div', { className: 'traffic-item', data: { seq: r.seq } }, head, body);
  }

  /** Height guess for items never rendered; corrected once measured. */
  function estimate(r) {
    if (r.mark) return 31;
    const size = Math.min(r.size, r.b64 ? r.b64.length * 0.75 | 0 : r.text ? r.text.length : 0);
    let textLines = 1;
    if (T.view !== 'hex') {
      const len = r.text !== null ? Math.min(r.text.length, TEXT_COLLAPSED_CHARS) : Math.min(size, BINARY_COLLAPSED_CHARS) * 2.5;
      textLines = Math.min(TEXT_COLLAPSED_LINES, Math.max(1, Math.ceil(len / T.cpl)));
      if (r.text !== null && r.text.indexOf('\n') >= 0) textLines = Math.min(TEXT_COLLAPSED_LINES, textLines + r.text.split('\n', TEXT_COLLAPSED_LINES).length - 1);
    }
    const hexLines = Math.max(1, Math.ceil(Math.min(size, hexLimit()) / T.hexRow));
    const lines = T.view === 'text' ? textLines : T.view === 'hex' ? hexLines : textLines + hexLines;
    const extra = (size > hexLimit() ? 21 : 0) + (r.size > size ? 21 : 0) + (T.view === 'both' ? 4 : 0);
    return 35 + lines * 18 + extra;
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
      y += r.h || (r.est || (r.est = estimate(r)));
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
          node = buildItem(r);
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
  renderers.traffic = function () {
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
    renderers.trafficBar();
  };

  renderers.trafficBar = function () {
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
  };

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
        items: all.map((r) => ({ at: r.at, room: r.room, from: r.from, from_id: r.fromId, to: r.to, size: r.size, bytes: r.b64 || bytesToBase64(recordBytes(r)), text: r.text })),
      };
      blob = new Blob([JSON.stringify(doc, null, 1)], { type: 'application/json' });
      name = 'switchboard-' + safe + '-' + fileStamp + '.json';
    } else {
      const lines = ['# switchboard traffic of ' + what + ', saved ' + fmtDateTime(stamp.getTime()) + ', ' + plural(all.length, 'message') +
        (T.droppedServer + T.droppedLocal ? ', ' + fmtInt(T.droppedServer + T.droppedLocal) + ' dropped' : '')];
      for (const r of all) {
        const dest = r.room != null ? '#' + r.room : r.to != null ? '-> ' + r.to : '';
        lines.push('', fmtDateTime(r.at) + '  ' + r.from + (r.fromId != null ? ' (' + r.fromId + ')' : '') + '  ' + dest + '  ' + r.size + ' bytes');
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

  function initTraffic() {
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
      onNextFrame('traffic', renderers.traffic);
    }, { passive: true });
    if (window.ResizeObserver) new ResizeObserver(() => onNextFrame('traffic', renderers.traffic)).observe(T.el);

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
          onNextFrame('traffic', renderers.traffic);
        }
        return;
      }
      const from = e.target.closest('.ti-from');
      if (from && from.dataset.fromId != null) watchTarget({ client: Number(from.dataset.fromId), name: from.dataset.name }, false);
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
      renderers.traffic();
    });

    // Messages per second shown in the bar, counted over the last second.
    setInterval(() => {
      T.rate = T.arrivals;
      T.arrivals = 0;
      invalidate('trafficBar');
    }, 1000);
  }

  /* ===================================================================
   * 6. Watching, sending, kicking, page chrome
   * =================================================================== */

  function watchMessage(w) {
    return w.room != null ? { type: 'watch', room: w.room } : { type: 'watch', client: w.client };
  }
  function watchLabel(w) {
    return w.room != null ? '#' + visible(w.room) : (visible(w.name) || 'client') + ' · id ' + w.client;
  }

  /** Starts watching a room ({room}) or a client ({client, name}). */
  function watchTarget(w, reveal) {
    const same = state.watch && (w.room != null ? state.watch.room === w.room : state.watch.client === w.client);
    if (!same) {
      state.watch = w;
      wsSend(watchMessage(w));
      addMark('watching ' + watchLabel(w));
      T.rate = 0;
      T.arrivals = 0;
      const target = $('#send-target');
      if (!target.value.trim() || target._auto === target.value) {
        target.value = w.room != null ? '#' + w.room : (w.name || '');
        target._auto = target.value;
      }
    }
    renderWatching();
    invalidate('clients');
    invalidate('rooms');
    invalidate('traffic');
    if (reveal) {
      const box = $('#traffic-section').getBoundingClientRect();
      // Instant, not smooth: a page still gliding under the pointer eats the next click.
      if (box.top < 0 || box.top > innerHeight * 0.6) $('#traffic-section').scrollIntoView({ block: 'start' });
    }
  }

  function unwatch() {
    if (!state.watch) return;
    state.watch = null;
    wsSend({ type: 'unwatch' });
    addMark('stopped watching');
    renderWatching();
    invalidate('clients');
    invalidate('rooms');
    invalidate('traffic');
  }

  function renderWatching() {
    const w = state.watch;
    const box = $('#watching');
    box.classList.toggle('on', !!w);
    setText($('.watching-label', box), w ? 'Watching ' + watchLabel(w) : 'Not watching anything');
    setTitle(box, w ? 'Watching ' + watchLabel(w) : '');
    $('#unwatch').hidden = !w;
  }

  function initWatch() {
    $('#unwatch').addEventListener('click', unwatch);
    $('#watch-lobby').addEventListener('click', () => watchTarget({ room: 'lobby' }, false));
    renderWatching();
  }

  /* ---------- send panel ---------- */

  const sender = { running: false, timer: null, count: 0, delivered: 0 };

  /** Reads the form; returns the request body or shows an inline error. */
  function buildSend() {
    const targetIn = $('#send-target'), bodyIn = $('#send-body');
    const target = targetIn.value.trim();
    const req = {};
    if (!target) return sendError('Choose where to send: #room or a client name.', targetIn);
    if (target.startsWith('#')) {
      const room = target.slice(1).trim();
      if (!room) return sendError('Write the room name after #.', targetIn);
      req.room = room;
    } else {
      req.to = target.replace(/^@/, '');
    }
    if ($('#send-format').value === 'hex') {
      const parsed = parseHex(bodyIn.value);
      if (parsed.error) return sendError(parsed.error, bodyIn);
      req.bytes = bytesToBase64(parsed.bytes);
    } else {
      if (!bodyIn.value.length) return sendError('Type a message first.', bodyIn);
      req.text = bodyIn.value;
    }
    sendError(null);
    return req;
  }

  /* One status line under the message (#send-result) says what happened:
   * an error (invalid input, or the server's answer) or the delivered count. */
  function sendStatus(kind, text) {
    const res = $('#send-result');
    setText(res, text);
    res.className = 'send-result ' + kind;
  }

  /** Shows an error (and marks the input), or clears a shown error; returns null. */
  function sendError(message, input) {
    for (const i of [$('#send-target'), $('#send-body'), $('#send-repeat')]) i.removeAttribute('aria-invalid');
    if (message) {
      sendStatus('error', message);
      if (input) input.setAttribute('aria-invalid', 'true');
    } else if ($('#send-result').classList.contains('error')) {
      sendStatus('', '');
    }
    return null;
  }

  function showSendResult(kind) {
    let text = 'Delivered to ' + plural(sender.delivered, 'client');
    if (sender.running || sender.count > 1) text += ' · ' + plural(sender.count, 'send');
    sendStatus(kind || (sender.delivered ? 'ok' : 'zero'), text);
  }

  async function sendOnce() {
    const req = buildSend();
    if (!req) return false;
    try {
      const r = await api('POST', '/api/v1/send', req);
      sender.count++;
      sender.delivered = r && r.delivered != null ? r.delivered : 0;
      showSendResult(sender.running ? 'running' : null);
      return true;
    } catch (e) {
      sendError('Not sent: ' + e.message);
      return false;
    }
  }

  function startRepeat(every) {
    sender.running = true;
    sender.count = 0;
    $('#send-stop').disabled = false;
    $('#send-button').disabled = true;
    $('#send-button').textContent = 'Sending…';
    const tick = async () => {
      if (!sender.running) return;
      const started = performance.now();
      const ok = await sendOnce();
      if (!ok) { stopRepeat(); return; }
      if (sender.running) sender.timer = setTimeout(tick, Math.max(0, every - (performance.now() - started)));
    };
    tick();
  }

  function stopRepeat() {
    if (!sender.running) return;
    sender.running = false;
    clearTimeout(sender.timer);
    $('#send-stop').disabled = true;
    $('#send-button').disabled = false;
    $('#send-button').textContent = 'Send';
    if (sender.count) showSendResult();
  }

  function initSend() {
    const form = $('#send-form');
    const body = $('#send-body');
    const format = $('#send-format');
    const syncPlaceholder = () => {
      body.placeholder = format.value === 'hex' ? 'Hex bytes, like 01 03 00 00 00 0A C5 CD (spaces optional). Ctrl+Enter sends.' : 'Message text. Ctrl+Enter sends.';
    };
    const validate = () => {
      if (format.value === 'hex' && body.value.trim()) {
        const p = parseHex(body.value);
        sendError(p.error || null, p.error ? body : null);
      } else {
        sendError(null);
      }
    };
    format.addEventListener('change', () => { syncPlaceholder(); validate(); storage.set('send.format', format.value); });
    body.addEventListener('input', validate);
    $('#send-target').addEventListener('input', () => { $('#send-target').removeAttribute('aria-invalid'); });
    if (storage.get('send.format') === 'hex') format.value = 'hex';
    syncPlaceholder();

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (sender.running) return;
      const repeatIn = $('#send-repeat');
      const rep = repeatIn.value.trim();
      if (rep === '') {
        sender.count = 0;
        const btn = $('#send-button');
        btn.disabled = true;
        await sendOnce();
        btn.disabled = false;
        return;
      }
      const every = Number(rep);
      if (!Number.isFinite(every) || every < 10) return sendError('Repeat every 10 ms or more, or leave it empty to send once.', repeatIn);
      if (!buildSend()) return;
      startRepeat(Math.round(every));
    });
    body.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    $('#send-stop').addEventListener('click', stopRepeat);
  }

  /* ---------- kick dialog ---------- */

  let kickClient = null;

  function openKick(c) {
    kickClient = c;
    const dlg = $('#kick-dialog');
    setText($('#kick-name'), visible(c.name));
    setText($('#kick-detail'), 'Client ' + c.id + ' · ' + visible(c.addr) + ' · ' + c.mode + (c.rooms && c.rooms.length ? ' · in ' + roomsText(c.rooms) : '') + '. The connection is closed now; the client may reconnect.');
    $('#kick-reason').value = '';
    $('#kick-error').hidden = true;
    $('#kick-confirm').disabled = false;
    if (!dlg.open) dlg.showModal();
    $('#kick-reason').focus();
  }

  function initKick() {
    const dlg = $('#kick-dialog');
    $('#kick-cancel').addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => { kickClient = null; });
    $('#kick-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const c = kickClient;
      if (!c) { dlg.close(); return; }
      const reason = $('#kick-reason').value.trim();
      const btn = $('#kick-confirm');
      btn.disabled = true;
      try {
        await api('DELETE', '/api/v1/clients/' + encodeURIComponent(c.id), reason ? { reason } : {});
        state.kicked.set(c.id, Date.now());
        dlg.close();
        toast(visible(c.name) + ' (' + visible(c.addr) + ') was disconnected.', 'ok', 'Kicked');
        invalidate('clients');
      } catch (ex) {
        btn.disabled = false;
        const err = $('#kick-error');
        err.textContent = ex.message;
        err.hidden = false;
      }
    });
  }

  /* ---------- start ---------- */

  initTheme();
  initTables();
  initListeners();
  initTraffic();
  initWatch();
  initSend();
  initKick();
  initLogout();
  $('#banner-retry').addEventListener('click', () => { live.delay = 1000; connect(); });
  // Relative times ("5 s ago") move even when no snapshot comes.
  setInterval(() => { invalidate('clients'); invalidate('closed'); }, 5000);
  ['overview', 'clients', 'rooms', 'closed', 'listeners', 'traffic'].forEach(invalidate);
  connect();
})();
