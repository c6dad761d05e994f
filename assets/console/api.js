/* The REST helper for the admin API (/api/v1/...): JSON both ways; an
 * ended session goes to the login page, a failure throws with the
 * server's message. */

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { 'Content-Type': 'application/json', Accept: 'application/json' } };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw Object.assign(new Error('The server could not be reached.'), { code: 'network' });
  }
  let data = null;
  try { data = await res.json(); } catch (e) { /* empty or not JSON */ }
  if (res.status === 401) {
    location.assign('/login');
    throw Object.assign(new Error('Your session has ended; please sign in again.'), { code: 'unauthorized' });
  }
  if (!res.ok) {
    const err = data && data.error;
    throw Object.assign(new Error((err && err.message) || 'The server answered ' + res.status + ' ' + res.statusText), {
      code: (err && err.code) || 'http_' + res.status,
    });
  }
  return data;
}
