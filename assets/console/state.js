/* What the page knows (state) and asks the server for (view), and the
 * render scheduler: each view registers a renderer for its part; data
 * changes invalidate parts, and they are drawn together on a frame. */

export const state = {
  version: null,
  stats: null,
  listeners: [],
  skew: 0,            // server clock minus browser clock, when it matters
  watch: null,        // {room} or {client, name}
  kicked: new Map(),  // client id -> time kicked, to grey the row until it goes
  history: [],        // rate samples for the sparklines
};

export function serverNow() { return Date.now() + state.skew; }

/** What the page asks the server for (the "view" message). */
export const view = {
  clients: { sort: 'id', order: 'desc', filter: '', room: '', offset: 0, limit: 100 },
  rooms: { filter: '', offset: 0, limit: 100 },
  closed: { offset: 0, limit: 100 },
};

/* Render scheduler: data changes mark parts dirty; they are drawn in one
 * animation frame, at most every MIN_FRAME_MS (about 10 renders a second),
 * however fast data arrives. Scrolling redraws its own component on the
 * next frame so virtual lists never show gaps. */
const MIN_FRAME_MS = 100;
const renderers = {};
const dirty = new Set();
let frameQueued = false;
let lastFrame = 0;

/** A view's renderer for its part ('overview', 'clients', 'traffic', ...). */
export function register(part, fn) { renderers[part] = fn; }

export function invalidate(part) {
  dirty.add(part);
  if (frameQueued) return;
  frameQueued = true;
  const wait = Math.max(0, lastFrame + MIN_FRAME_MS - performance.now());
  setTimeout(() => requestAnimationFrame(drawFrame), wait);
}
function drawFrame() {
  frameQueued = false;
  lastFrame = performance.now();
  const parts = Array.from(dirty);
  dirty.clear();
  for (const p of parts) {
    try { renderers[p](); } catch (e) { console.error('render ' + p, e); }
  }
}
const nextFrameJobs = new Map();
export function onNextFrame(key, fn) {
  if (nextFrameJobs.has(key)) return;
  nextFrameJobs.set(key, fn);
  requestAnimationFrame(() => { nextFrameJobs.delete(key); fn(); });
}
