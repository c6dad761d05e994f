/* Watching: which room or client the traffic view shows. Every way to
 * start watching is here: a room's row, a client's Watch button, a
 * sender's name in the traffic, the "Watch #lobby" button; and to stop.
 * Client names reach the page through textContent and attributes only. */

import { $, setText, setTitle } from './dom.js';
import { visible } from './format.js';
import { api } from './api.js';
import { state, invalidate } from './state.js';
import { onLive, wsSend } from './live.js';
import { addMark, markWatch, addHistory, markBack, addMissed, resetRate } from './traffic.js';

/* How many of a room's last messages (kept with --history) a watch of it starts with. */
const HISTORY_SHOWN = 50;
/* Most messages a watch catches up on after the feed comes back (the API's largest page). */
const MISSED_SHOWN = 1000;

function watchMessage(w) {
  return w.room != null ? { type: 'watch', room: w.room } : { type: 'watch', client: w.client };
}
function watchLabel(w) {
  return w.room != null ? '#' + visible(w.room) : (visible(w.name) || 'client') + ' · id ' + w.client;
}

/** Shows what a room said before the watch `w` began: its last kept
 * messages, before the watch's mark in the traffic (`start`, from
 * markWatch). Once per start of a watch, not on the feed's reconnects.
 * An answer for a watch that has moved on is dropped; a room that keeps
 * nothing, or a failure, shows nothing more. */
async function showHistory(w, start) {
  let data;
  try {
    data = await api('GET', '/api/v1/rooms/' + encodeURIComponent(w.room) + '/history?limit=' + HISTORY_SHOWN);
  } catch (e) {
    console.warn('No history for #' + w.room + ': ' + e.message);
    return;
  }
  if (state.watch !== w) return;
  if (!data || data.epoch == null || !Array.isArray(data.messages) || !data.messages.length) return;
  const last = data.messages[data.messages.length - 1];
  if (!w.lastOffset && last && typeof last.offset === 'string') w.lastOffset = last.offset;
  addHistory(start, typeof data.room === 'string' ? data.room : w.room, data.messages);
}

/* What a gap (GET .../history?since=) says was lost, in a few words. */
function lostText(gap, room) {
  if (!gap || typeof gap !== 'object') return '';
  const r = '#' + visible(room);
  if (gap.reason === 'epoch') return 'The server lost ' + r + "'s history while disconnected (a restart?): messages may be missing";
  if (gap.reason === 'not_kept') return r + ' keeps no history now: messages said while disconnected are not shown';
  if (gap.reason === 'unrecorded') return 'Messages of ' + r + " said while the cluster's Redis was out of reach were never kept: some may be missing";
  return 'Some messages of ' + r + ' said while disconnected are no longer kept';
}

/** Back on the feed after a drop, watching a room: shows what it said
 * meanwhile (kept messages after the last one shown), or says what was
 * lost. Once per reconnect; an answer for a watch that has moved on is
 * dropped. */
async function showMissed(w) {
  const back = markBack();
  let data;
  try {
    data = await api('GET', '/api/v1/rooms/' + encodeURIComponent(w.room) + '/history?since=' +
      encodeURIComponent(w.lastOffset) + '&limit=' + MISSED_SHOWN);
  } catch (e) {
    console.warn('Cannot catch up on #' + w.room + ': ' + e.message);
    return;
  }
  if (state.watch !== w || !data || !Array.isArray(data.messages)) return;
  let lost = lostText(data.gap, w.room);
  if (data.more) lost = [lost, 'only the first ' + MISSED_SHOWN + ' missed messages are shown'].filter(Boolean).join('; ');
  const last = data.messages[data.messages.length - 1];
  addMissed(back, w.room, data.messages, lost);
  if (last && typeof last.offset === 'string' && w.lastOffset && sameEpochAfter(last.offset, w.lastOffset)) w.lastOffset = last.offset;
}

/* Whether offset a (EPOCH-SEQ) comes after b: later in the same epoch, or of another epoch. */
function sameEpochAfter(a, b) {
  const [ea, sa] = a.split('-');
  const [eb, sb] = b.split('-');
  return ea !== eb || Number(sa) > Number(sb);
}

/** Starts watching a room ({room}) or a client ({client, name}). */
function watchTarget(w, reveal) {
  const same = state.watch && (w.room != null ? state.watch.room === w.room : state.watch.client === w.client);
  if (!same) {
    state.watch = w;
    wsSend(watchMessage(w));
    const start = markWatch('watching ' + watchLabel(w));
    resetRate();
    if (w.room != null) showHistory(w, start);
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

/* Back on the feed: watch again what was watched, and catch up on what a
 * watched room said meanwhile. */
onLive('open', () => {
  const w = state.watch;
  if (!w) return;
  wsSend(watchMessage(w));
  if (w.room != null && w.lastOffset) showMissed(w);
});

/* The watched client left, or the watched room emptied: stop pretending. */
onLive('watchFailed', () => {
  if (state.watch) { state.watch = null; renderWatching(); invalidate('clients'); invalidate('rooms'); invalidate('traffic'); }
});

export function initWatch() {
  // A client's Watch button (its Kick button is kick.js's).
  $('#clients').addEventListener('click', (e) => {
    const btn = e.target.closest('button');
    const tr = btn && btn.closest('tr');
    if (!tr || !tr._item) return;
    const c = tr._item;
    if (btn.classList.contains('watch')) watchTarget({ client: c.id, name: c.name }, true);
  });

  // A room's row, clicked or with Enter or Space (arrow keys: tables.js).
  const roomsBody = $('#rooms');
  const watchRow = (tr) => { if (tr && tr.dataset.room != null) watchTarget({ room: tr.dataset.room }, true); };
  roomsBody.addEventListener('click', (e) => watchRow(e.target.closest('tr')));
  roomsBody.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); watchRow(tr); }
  });

  // A sender's name in the traffic.
  $('#traffic').addEventListener('click', (e) => {
    const from = e.target.closest('.ti-from');
    if (from && from.dataset.fromId != null) watchTarget({ client: Number(from.dataset.fromId), name: from.dataset.name }, false);
  });

  $('#unwatch').addEventListener('click', unwatch);
  $('#watch-lobby').addEventListener('click', () => watchTarget({ room: 'lobby' }, false));
  renderWatching();
}
