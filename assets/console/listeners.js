/* The listeners panel: the table of listeners, the form that opens one
 * through the API, and closing one. Client-given room names reach the page
 * through textContent and attributes only. */

import { $, el, setText, setTitle, setClass, toast, copyText } from './dom.js';
import { fmtInt, fmtDuration, visible } from './format.js';
import { api } from './api.js';
import { state, register, invalidate } from './state.js';
import { modeTag } from './badges.js';

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
  if (l.mode === 'udp') return 'nc -u ' + host + ' ' + a.port;
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
register('listeners', function () {
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
      c[5].replaceChildren(el('span', { className: 'badge ' + (l.origin === 'api' ? 'tone-info' : l.origin === 'playground' ? 'tone-purple' : 'tone-neutral'), text: l.origin }));
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
      if (l.origin !== 'config') btns.push(el('button', { className: 'btn btn-xs btn-danger close', type: 'button', text: 'Close', attrs: { 'aria-label': 'Close listener ' + l.id } }));
      c[7].replaceChildren(...btns);
    }
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const [id, tr] of listenerRows) if (!seen.has(id)) { tr.remove(); listenerRows.delete(id); }
  if (state.stats) setText($('#ov-listeners'), fmtInt(list.length));
});

export function initListeners() {
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
  const takesDevices = (mode) => mode === 'raw' || mode === 'udp';
  const showDevice = () => { $('#listener-device-field').hidden = !takesDevices(modeSelect.value); };
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
    if (takesDevices(body.mode) && device) body.device = device;
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
