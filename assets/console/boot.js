/* Loaded before a page's modules, as a classic script. If one of the
 * modules fails to load (a network error while the page loads), none of
 * them runs and the page would sit at "connecting" for ever, saying
 * nothing. So the page is reloaded once; if its modules fail again, it
 * says so. A page's first module clears the mark once it runs. */
(function () {
  'use strict';
  var KEY = 'switchboard-reloaded-after-a-script-failed';
  function say() {
    var message = 'The page\u2019s scripts did not load (a network error). Reload the page to try again.';
    var status = document.getElementById('status');
    if (status) {
      status.dataset.state = 'offline';
      status.textContent = 'offline';
    }
    var banner = document.getElementById('banner');
    var text = document.getElementById('banner-text');
    if (banner && text) {
      text.textContent = message;
      var button = document.getElementById('banner-retry');
      if (button) {
        button.textContent = 'Reload';
        button.onclick = function () { location.reload(); };
      }
      banner.hidden = false;
      return;
    }
    var note = document.createElement('p');
    note.setAttribute('role', 'alert');
    note.className = 'banner';
    note.textContent = message;
    document.body.insertBefore(note, document.body.firstChild);
  }
  window.addEventListener('error', function (event) {
    var script = event.target;
    if (!script || script.tagName !== 'SCRIPT' || script.type !== 'module') return;
    var reloaded = true;
    try {
      reloaded = sessionStorage.getItem(KEY) === '1';
      sessionStorage.setItem(KEY, '1');
    } catch (e) { /* no storage: do not risk reloading in a loop */ }
    if (!reloaded) { location.reload(); return; }
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', say);
    else say();
  }, true);
})();
