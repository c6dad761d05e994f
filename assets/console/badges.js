/* Small tags shared by several views: a disconnect reason's badge and
 * a connection mode's tag. */

import { el } from './dom.js';
import { fmtInt } from './format.js';

/* Reason codes get a colour by what they mean: goodbyes are grey,
 * policing by the server amber or red, the admin purple. */
const REASON_TONES = {
  quit: 'neutral', client_closed: 'neutral', server_shutdown: 'neutral', closed: 'neutral',
  kicked: 'purple',
  refused: 'danger', slow_consumer: 'danger', too_slow: 'danger', memory_budget: 'danger',
  stalled: 'warn', idle: 'warn', line_timeout: 'warn',
  read_failed: 'cyan', write_failed: 'cyan', connection_lost: 'cyan',
};
export function reasonBadge(code, count) {
  code = String(code || 'unknown');
  const tone = REASON_TONES[code] || (/fail|error|lost/.test(code) ? 'cyan' : 'neutral');
  const badge = el('span', { className: 'badge tone-' + tone, text: code.replace(/_/g, ' ') });
  if (count != null) badge.append(el('span', { className: 'badge-count', text: fmtInt(count) }));
  return badge;
}

/* A mode's tag; a client over TLS (or WSS) says so after its mode. */
export function modeTag(mode, tls) {
  mode = String(mode || '?');
  return el('span', { className: 'mode mode-' + mode.replace(/[^a-z-]/g, ''), text: tls ? mode + '+tls' : mode });
}
