/* One message of the traffic view, built as an element: its head, its
 * text with control characters and invalid bytes shown, its hex dump, the
 * optional Modbus CRC check; and its height guessed before it is built.
 * `o` is the traffic list's settings (T in traffic.js): view ('text',
 * 'hex' or 'both'), crc (the check is on), hexRow (bytes a hex line), cpl
 * (characters a text line). Client data reaches the page through
 * textContent and attributes only. */

import { el } from './dom.js';
import { fmtInt, fmtBytes, fmtClock, fmtDateTime, visible, HEX, controlPicture, recordBytes } from './format.js';

const TEXT_COLLAPSED_CHARS = 1200;
const TEXT_COLLAPSED_LINES = 16;
const BINARY_COLLAPSED_CHARS = 256;
const HEX_COLLAPSED_BYTES = 256;     // in the Hex view; Both shows 64 under the text
const hexLimit = (view) => (view === 'both' ? 64 : HEX_COLLAPSED_BYTES);

/** Appends text to `out`: plain runs as text nodes, placeholders as
 * spans (.ctl for control characters' names, .bad for invalid bytes). Consecutive
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
  // Control names are words: spaced in their shared badge (NUL SOH LF).
  this.special += this.special && kind === 'ctl' ? ' ' + text : text;
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
export function hexDump(bytes, limit, perRow) {
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
function crcTag(r, bytes, on) {
  if (!on || r.size !== bytes.length) return null;
  const n = bytes.length;
  const ok = n >= 4 && crc16(bytes, n - 2) === (bytes[n - 2] | (bytes[n - 1] << 8));
  return el('span', {
    className: 'ti-tag ' + (ok ? 'crc-ok' : 'crc-bad'),
    text: ok ? 'CRC ✓' : 'CRC ✗',
    title: ok ? 'A Modbus RTU frame: its CRC-16 holds' : 'Not a Modbus RTU frame, or its CRC-16 fails',
  });
}

export function buildItem(r, o) {
  if (r.mark) return el('div', { className: 'traffic-mark', attrs: { role: 'separator' }, text: r.text });

  const bytes = recordBytes(r);
  const binary = r.text === null;
  const head = el('div', { className: 'ti-head' },
    el('time', { className: 'ti-time', text: fmtClock(r.at), attrs: { datetime: new Date(r.at).toISOString() }, title: fmtDateTime(r.at) }),
    el('button', { className: 'ti-from', type: 'button', text: visible(r.from) || '?', title: r.fromId != null ? 'Watch ' + visible(r.from) + ' (client ' + r.fromId + ')' : '', data: r.fromId != null ? { fromId: r.fromId, name: r.from } : null }),
    r.room != null ? el('span', { className: 'ti-dest', text: '#' + visible(r.room) })
      : r.to != null ? el('span', { className: 'ti-dest dm', text: '→ ' + visible(r.to) }) : null,
    // Kept by the room and shown when the watch began (traffic.js, addHistory).
    r.history ? el('span', { className: 'ti-tag ti-history', text: 'history', title: 'Said before you started watching; the room keeps its last messages' }) : null,
    binary ? el('span', { className: 'ti-tag', text: 'binary', title: 'Not valid UTF-8' }) : null,
    crcTag(r, bytes, o.crc),
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
  const limit = r.open ? bytes.length : hexLimit(o.view);
  const dump = hexDump(bytes, limit, o.hexRow);
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
  // .history: the look of kept messages, and a hook for tests (#traffic .history).
  return el('div', { className: r.history ? 'traffic-item history' : 'traffic-item', data: { seq: r.seq } }, head, body);
}

/** Height guess for items never rendered; corrected once measured. */
export function estimate(r, o) {
  if (r.mark) return 31;
  const size = Math.min(r.size, r.b64 ? r.b64.length * 0.75 | 0 : r.text ? r.text.length : 0);
  let textLines = 1;
  if (o.view !== 'hex') {
    const len = r.text !== null ? Math.min(r.text.length, TEXT_COLLAPSED_CHARS) : Math.min(size, BINARY_COLLAPSED_CHARS) * 2.5;
    textLines = Math.min(TEXT_COLLAPSED_LINES, Math.max(1, Math.ceil(len / o.cpl)));
    if (r.text !== null && r.text.indexOf('\n') >= 0) textLines = Math.min(TEXT_COLLAPSED_LINES, textLines + r.text.split('\n', TEXT_COLLAPSED_LINES).length - 1);
  }
  const hexLines = Math.max(1, Math.ceil(Math.min(size, hexLimit(o.view)) / o.hexRow));
  const lines = o.view === 'text' ? textLines : o.view === 'hex' ? hexLines : textLines + hexLines;
  const extra = (size > hexLimit(o.view) ? 21 : 0) + (r.size > size ? 21 : 0) + (o.view === 'both' ? 4 : 0);
  return 35 + lines * 18 + extra;
}
