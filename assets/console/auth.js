/* Whether the server has an admin token, which the login page and the
 * console's "Log out" button depend on. */

import { $ } from './dom.js';

/** Whether the server has an admin token: 'token', 'none' (there is
 * none and this is the server's own machine, where the console needs no
 * signing in), 'remote' (none, and this is another machine, which the
 * console does not answer) or 'unknown'. The page cannot read its
 * cookie (HttpOnly), so it asks the API once without it: a request with
 * no credentials is no failed attempt, and a HEAD has no body. */
export async function adminAuth() {
  try {
    const res = await fetch('/api/v1/stats', { method: 'HEAD', credentials: 'omit', cache: 'no-store' });
    if (res.status === 401 || res.status === 429) return 'token';
    if (res.ok) return 'none';
    if (res.status === 403) return 'remote';
  } catch (e) { /* unreachable for now */ }
  return 'unknown';
}

/** "Log out" shows only when there is a token to forget (the page
 * starts without it). */
export async function initLogout() {
  const auth = await adminAuth();
  document.body.dataset.auth = auth;
  $('.logout-form').hidden = auth !== 'token';
}
