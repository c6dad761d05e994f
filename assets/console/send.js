/* The send panel: send text or hex bytes to a room or a client through
 * the API, once or repeated every N ms. */

import { $, setText, storage } from './dom.js';
import { plural, bytesToBase64, parseHex } from './format.js';
import { api } from './api.js';

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

export function initSend() {
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
