/* The kick dialog: a client's Kick button asks, with an optional reason,
 * then disconnects it through the API. Client data reaches the page
 * through textContent only. */

import { $, setText, toast } from './dom.js';
import { visible, roomsText } from './format.js';
import { api } from './api.js';
import { state, invalidate } from './state.js';

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

export function initKick() {
  // A client's Kick button (its Watch button is watch.js's).
  $('#clients').addEventListener('click', (e) => {
    const btn = e.target.closest('button');
    const tr = btn && btn.closest('tr');
    if (!tr || !tr._item) return;
    const c = tr._item;
    if (btn.classList.contains('kick')) openKick(c);
  });

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
