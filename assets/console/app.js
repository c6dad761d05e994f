/* switchboard console: plain JavaScript, no framework, no build step.
 * Native ES modules, served as they are from /assets/; this one is the
 * console's entry: it starts the views in order, then the live feed.
 *
 *   dom.js, format.js, api.js, auth.js   helpers: DOM building, formatting, REST, admin token
 *   state.js                             state, view request, render scheduler
 *   live.js                              live feed (WebSocket)
 *   overview.js, listeners.js            overview cards, listeners panel
 *   virtual-table.js, tables.js          clients, rooms, disconnects
 *   traffic.js, traffic-item.js          traffic view
 *   watch.js, send.js, kick.js           watching, send panel, kick dialog
 *   badges.js                            reason badges and mode tags
 *
 * The login page loads login.js only.
 *
 * Everything that comes from clients (names, rooms, text, reasons) is
 * untrusted: it only ever reaches the page through textContent, text nodes
 * or attributes, never through innerHTML.
 */

import { $, initTheme } from './dom.js';
import { invalidate } from './state.js';
import { initLogout } from './auth.js';
import { connect, reconnectNow } from './live.js';
import './overview.js'; // registers its renderer
import { initListeners } from './listeners.js';
import { initTables } from './tables.js';
import { initTraffic } from './traffic.js';
import { initWatch } from './watch.js';
import { initSend } from './send.js';
import { initKick } from './kick.js';

// Every module of the page loaded: boot.js may reload it again after a
// later failure.
try { sessionStorage.removeItem('switchboard-reloaded-after-a-script-failed'); } catch (e) { /* no storage */ }

initTheme();
initTables();
initListeners();
initTraffic();
initWatch();
initSend();
initKick();
initLogout();
$('#banner-retry').addEventListener('click', reconnectNow);
// Relative times ("5 s ago") move even when no snapshot comes.
setInterval(() => { invalidate('clients'); invalidate('closed'); }, 5000);
['overview', 'clients', 'rooms', 'closed', 'listeners', 'traffic'].forEach(invalidate);
connect();
