/* The login page's script (the console's is app.js): the saved theme, why
 * the last sign-in failed, and, where the server has no admin token, the
 * console itself or why it does not open here. */

import { $, initTheme } from './dom.js';
import { adminAuth } from './auth.js';

// Every module of the page loaded: boot.js may reload it again after a
// later failure.
try { sessionStorage.removeItem('switchboard-reloaded-after-a-script-failed'); } catch (e) { /* no storage */ }

initTheme();
const q = new URLSearchParams(location.search);
if (q.has('failed')) $('#login-failed').hidden = false;
if (q.has('limited')) $('#login-limited').hidden = false;
// Without a token there is nothing to sign in with (the form would
// take any string): here, open the console; elsewhere, say why not.
adminAuth().then((auth) => {
  if (auth === 'none') location.replace('/');
  if (auth === 'remote') {
    $('#login-no-token').hidden = false;
    $('.login-form').hidden = true;
    $('.login-hint').hidden = true;
  }
});
