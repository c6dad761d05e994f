/* DOM helpers, shared by the console and the login page: building
 * elements, cheap repeated updates, saved settings, toasts, the theme. */

export const $ = (sel, root) => (root || document).querySelector(sel);

/** Builds an element. props: className, text, title, data (dataset), attrs, on (events). */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    if (props.className) node.className = props.className;
    if (props.text != null) node.textContent = props.text;
    if (props.title != null) node.title = props.title;
    if (props.type) node.type = props.type;
    if (props.data) for (const k in props.data) node.dataset[k] = props.data[k];
    if (props.attrs) for (const k in props.attrs) node.setAttribute(k, props.attrs[k]);
    if (props.on) for (const k in props.on) node.addEventListener(k, props.on[k]);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

/** Sets text only when it changed (cheap repeated renders, no layout churn). */
export function setText(node, text) {
  text = text == null ? '' : String(text);
  if (node._text !== text) { node.textContent = text; node._text = text; }
}
export function setTitle(node, title) {
  title = title == null ? '' : String(title);
  if (node._title !== title) { node.title = title; node._title = title; }
}
export function setClass(node, cls) {
  if (node._cls !== cls) { node.className = cls; node._cls = cls; }
}

export const storage = {
  get(k) { try { return localStorage.getItem('switchboard.' + k); } catch (e) { return null; } },
  set(k, v) { try { localStorage.setItem('switchboard.' + k, v); } catch (e) { /* private mode */ } },
};

/* ---------- toasts ---------- */

export function toast(message, kind, title) {
  const box = $('#toasts');
  if (!box) return;
  const close = el('button', { className: 'btn btn-ghost btn-xs', type: 'button', text: '✕', attrs: { 'aria-label': 'Dismiss' } });
  const node = el('div', { className: 'toast ' + (kind || ''), attrs: { role: kind === 'error' ? 'alert' : 'status' } },
    el('div', { className: 'toast-body' }, title ? el('div', { className: 'toast-title', text: title }) : null, el('div', { text: message })),
    close);
  const remove = () => node.remove();
  close.addEventListener('click', remove);
  box.append(node);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(remove, kind === 'error' ? 9000 : 5000);
}

/** The Clipboard API needs a secure context (https or localhost); over
 * plain http to another host, show the text to copy by hand instead. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast(text, 'ok', 'Copied');
  } catch (e) {
    toast(text, 'info', 'Copy this by hand');
  }
}

/* ---------- theme (the console's toggle; the login page applies it) ---------- */

export function initTheme() {
  const saved = storage.get('theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
  const btn = $('#theme-toggle');
  if (!btn) return;
  btn.addEventListener('click', () => {
    const current = document.documentElement.dataset.theme ||
      (matchMedia('(prefers-color-scheme: light)').matches ? 'light' : 'dark');
    const next = current === 'light' ? 'dark' : 'light';
    document.documentElement.dataset.theme = next;
    storage.set('theme', next);
  });
}
