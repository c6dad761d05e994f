/* The login page's script (the console's is app.js): the saved theme, why
 * the last sign-in failed, and, where the server has no admin token, the
 * console itself or why it does not open here. */

import { $, initTheme } from './dom.js';
import { adminAuth } from './auth.js';

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
