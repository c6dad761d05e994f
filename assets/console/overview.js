/* The overview cards at the top: counts, rates, memory, disconnect
 * reasons and the sparklines of the last minute. */

import { $, el, setText, setTitle, setClass } from './dom.js';
import { fmtInt, fmtCount, fmtRate, fmtBytes, fmtDuration, fmtDateTime } from './format.js';
import { state, register } from './state.js';
import { reasonBadge } from './badges.js';

register('overview', function () {
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
});

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
