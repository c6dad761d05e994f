/* The clients, rooms and recent disconnects tables (VirtualTables fed
 * by the snapshots' pages), their filters and sort, and the datalists
 * of room and client names. What a click on a row does is watch.js's
 * (watch a room or client) and kick.js's (the Kick button). Client data
 * reaches the page through textContent and attributes only. */

import { $, el, setText, setTitle, setClass, storage } from './dom.js';
import { fmtInt, fmtCount, fmtRate, fmtBytes, fmtDuration, fmtAgo, fmtClock, fmtDateTime, visible, roomsText } from './format.js';
import { state, view, register } from './state.js';
import { onLive, sendView } from './live.js';
import { reasonBadge, modeTag } from './badges.js';
import { VirtualTable } from './virtual-table.js';

/* ---------- cells ---------- */

/** A cell that shows a formatted number and its exact value on hover. */
const numCell = (get, fmt) => (td, c) => { const v = get(c); setText(td, fmt(v)); setTitle(td, fmtInt(v)); };
/** Message count; the tooltip adds the bytes (their column hides on narrow screens). */
const msgCell = (get, getBytes) => (td, c) => { const v = get(c); setText(td, fmtCount(v)); setTitle(td, fmtInt(v) + ' messages, ' + fmtBytes(getBytes(c))); };
const bytesCell = (get) => (td, c) => { const v = get(c); setText(td, fmtBytes(v)); setTitle(td, fmtInt(v) + ' bytes'); };
const agoCell = (get, what) => (td, c) => { const v = get(c); setText(td, fmtAgo(v)); setTitle(td, v ? what + ' ' + fmtDateTime(v) : ''); };
const textCell = (get) => (td, c) => { const v = visible(get(c)); setText(td, v); setTitle(td, v); };
/** A client's mode; a registered device shows as a device, and one that
 *  sends datagrams as a device over UDP (as one over TLS shows +tls). */
const modeCell = (td, c) => {
  const mode = c.device ? 'device' : c.mode;
  const udp = !!c.device && c.mode === 'udp';
  const shown = mode + (c.tls ? '+tls' : '') + (udp ? '+udp' : '');
  if (td._mode !== shown) {
    td._mode = shown;
    const tag = modeTag(mode, c.tls);
    if (udp) tag.textContent = shown;
    td.replaceChildren(tag);
  }
  const over = c.mode === 'udp' ? 'a UDP listener' : 'a raw listener';
  setTitle(td, c.device ? 'a device on ' + over + ', registered as ' + visible(c.device.id) : (c.mode === 'udp' ? 'a UDP peer: each datagram it sends is a message' : ''));
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

/* ---------- clients ---------- */

/* Fixed widths, as narrow as their header (and its sort arrow) or their
 * values allow: Name and Rooms, without one, share what is left, so
 * that a desktop shows a device's full name and its room (the ID, in
 * the name's tooltip too, gives way first). */
const clientColumns = [
  { label: 'ID', sort: 'id', width: 56, num: true, cls: 'dim', hide: 'lg', render: (td, c) => setText(td, c.id) },
  { label: 'Name', sort: 'name', cls: 'name name-cell key', col: 'key', render: nameCell },
  { label: 'Address', sort: 'addr', width: 132, cls: 'mono', render: textCell((c) => c.addr) },
  { label: 'Mode', sort: 'mode', width: 84, render: modeCell },
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
register('clients', () => {
  clientsTable.render();
  setText($('#clients-count'), clientsTable.total || view.clients.filter || view.clients.room ? fmtInt(clientsTable.total) : '');
});

/* ---------- rooms ---------- */

export const roomsTable = new VirtualTable({
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
register('rooms', () => {
  roomsTable.render();
  setText($('#rooms-count'), fmtInt(roomsTable.total));
});

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
register('closed', () => {
  closedTable.render();
  setText($('#closed-count'), closedTable.total ? fmtInt(closedTable.total) : '');
});

/* Each snapshot brings the window of each list the view asked for. */
onLive('snapshot', (msg) => {
  if (msg.clients) {
    clientsTable.setPage(msg.clients.total, msg.clients.offset, msg.clients.clients);
    const devices = Array.isArray(msg.clients.clients) && msg.clients.clients.some((c) => c.device);
    $('#clients-table').classList.toggle('has-devices', devices);
  }
  if (msg.rooms) roomsTable.setPage(msg.rooms.total, msg.rooms.offset, msg.rooms.rooms);
  if (msg.closed) closedTable.setPage(msg.closed.total, msg.closed.offset, msg.closed.clients);
});

export function initTables() {
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

  // Arrow keys move between room rows (Enter or Space watches one: watch.js).
  $('#rooms').addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    if (e.key === 'ArrowDown' && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    if (e.key === 'ArrowUp' && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
  });
}

/* Datalists for the room filter and the send target, from the current pages. */
let datalistsKey;
register('datalists', function () {
  const rooms = roomsTable.items.map((r) => r.name);
  const names = clientsTable.items.slice(0, 100).map((c) => c.name);
  const key = rooms.join('\u0000') + '\u0001' + names.join('\u0000');
  if (key === datalistsKey) return;
  datalistsKey = key;
  const opt = (v) => { const o = document.createElement('option'); o.value = v; return o; };
  $('#room-list').replaceChildren(...rooms.slice(0, 200).map(opt));
  $('#target-list').replaceChildren(...rooms.slice(0, 100).map((r) => opt('#' + r)), ...names.map(opt));
  $('#watch-lobby').hidden = !!state.watch || !rooms.includes('lobby');
});
