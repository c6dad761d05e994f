/* Formatting for display: counts, sizes, durations, clock times,
 * untrusted strings with their hidden characters made visible, and
 * bytes (hex, base64). No DOM. */

import { serverNow } from './state.js';

/* ---------- formatting ---------- */

const intFmt = new Intl.NumberFormat('en-US');
export const fmtInt = (n) => intFmt.format(Math.round(n || 0));

/** 999, 1.2k, 12.3k, 123k, 1.2M ... */
export function fmtCount(n) {
  n = Number(n) || 0;
  if (Math.abs(n) < 1000) return String(Math.round(n));
  const units = ['k', 'M', 'G', 'T'];
  let u = -1;
  do { n /= 1000; u++; } while (Math.abs(n) >= 999.5 && u < units.length - 1);
  return (Math.abs(n) < 100 ? n.toFixed(1) : n.toFixed(0)) + units[u];
}

/** Messages per second: 0/s, 2.5/s, 42/s, 3.4k/s. */
export function fmtRate(n) {
  n = Number(n) || 0;
  if (n === 0) return '0/s';
  if (n < 10) return n.toFixed(1) + '/s';
  if (n < 1000) return Math.round(n) + '/s';
  return fmtCount(n) + '/s';
}

/** Bytes with binary units, matching the server's KiB/MiB settings. */
export function fmtBytes(n) {
  n = Number(n) || 0;
  if (n < 1024) return Math.round(n) + ' B';
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = -1;
  do { n /= 1024; u++; } while (n >= 1023.5 && u < units.length - 1);
  return (n < 100 ? n.toFixed(1) : n.toFixed(0)) + ' ' + units[u];
}

/** 45 s, 3 min 20 s, 2 h 13 min, 3 d 4 h. */
export function fmtDuration(sec) {
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
export function fmtAgo(ms) {
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

export const pad2 = (n) => (n < 10 ? '0' : '') + n;
const pad3 = (n) => (n < 10 ? '00' : n < 100 ? '0' : '') + n;
/** HH:MM:SS.mmm in local time. */
export function fmtClock(ms, withMillis) {
  const d = new Date(ms);
  const t = pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  return withMillis === false ? t : t + '.' + pad3(d.getMilliseconds());
}
/** 2025-11-22 14:03:07 (local), for tooltips and saved logs. */
export function fmtDateTime(ms) {
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + fmtClock(ms);
}
/* Untrusted short strings (names, rooms, reasons) shown with control,
 * invisible and bidi-override characters made visible, so that nothing
 * can hide, reorder or fake what is displayed next to it. */
const SUSPECT = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/;
export function visible(s) {
  s = s == null ? '' : String(s);
  if (!SUSPECT.test(s)) return s;
  let out = '';
  for (const ch of s) {
    const pic = controlPicture(ch.codePointAt(0));
    out += pic === null ? ch : '[' + pic + ']';
  }
  return out;
}
export const plural = (n, one, many) => fmtInt(n) + ' ' + (n === 1 ? one : many || one + 's');
/** A client's rooms, at most three named: #a, #b, #c +2. */
export function roomsText(rooms) {
  if (!Array.isArray(rooms) || !rooms.length) return '';
  const shown = rooms.slice(0, 3).map((r) => '#' + visible(r)).join(', ');
  return rooms.length > 3 ? shown + ' +' + (rooms.length - 3) : shown;
}

/* ---------- bytes and base64 ---------- */

export const HEX = [];
for (let i = 0; i < 256; i++) HEX.push((i < 16 ? '0' : '') + i.toString(16).toUpperCase());

/* The ASCII names of the control characters, as a placeholder shows
 * them: in letters any font has (Unicode's control pictures, ␀ … ␟, are
 * missing from common Linux fonts, and showed as empty boxes there). */
const C0 = ['NUL', 'SOH', 'STX', 'ETX', 'EOT', 'ENQ', 'ACK', 'BEL', 'BS', 'HT', 'LF', 'VT', 'FF', 'CR', 'SO', 'SI',
  'DLE', 'DC1', 'DC2', 'DC3', 'DC4', 'NAK', 'SYN', 'ETB', 'CAN', 'EM', 'SUB', 'ESC', 'FS', 'GS', 'RS', 'US'];

/* Characters that would be invisible, control the terminal, or reorder
 * text (bidi overrides) are drawn as visible placeholders instead: a
 * control character's ASCII name (LF, NUL), a C1 one's \u escape, an
 * invisible or bidi one's code point. */
export function controlPicture(cp) {
  if (cp < 0x20) return C0[cp];
  if (cp === 0x7f) return 'DEL';
  if (cp < 0xa0) return cp >= 0x80 ? '\\u' + HEX[0] + HEX[cp] : null;
  if (cp === 0xad || cp === 0x061c || cp === 0x200b || cp === 0x200e || cp === 0x200f ||
      (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp === 0xfeff ||
      (cp >= 0xfff9 && cp <= 0xfffb)) {
    return 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
  }
  return null;
}

function base64ToBytes(b64) {
  let bin;
  try { bin = atob(b64 || ''); } catch (e) { return null; }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const UTF8 = new TextEncoder();
/** A traffic record's bytes: sent as base64 when they are not UTF-8, as text when they are. */
export function recordBytes(r) {
  if (r.b64) return base64ToBytes(r.b64) || new Uint8Array(0);
  return r.text ? UTF8.encode(r.text) : new Uint8Array(0);
}
export function bytesToBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** Parses "01 03 00 0A", "0x01,0x03", "01030A" into bytes, or returns {error}. */
export function parseHex(input) {
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
