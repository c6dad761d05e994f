/* Virtual tables, the component of the clients, rooms and disconnects
 * lists (tables.js).
 *
 * One <table> per list: a sticky <thead>, a spacer <tbody> above, the
 * real rows in <tbody id=...>, a spacer <tbody> below. Only the visible
 * rows (plus a few) exist; the server pages, so the table asks for the
 * window around the visible rows and shows placeholders until it comes.
 * Rows are keyed and reused so that focus and hover survive updates. */

import { $, el, setText } from './dom.js';
import { invalidate, onNextFrame } from './state.js';

export function VirtualTable(o) {
  this.o = o;
  this.scroll = o.scroll;
  this.rowH = 37;          // measured after the first rows render
  this.total = 0;
  this.offset = 0;
  this.items = [];
  this.rows = new Map();
  this.req = { offset: 0, limit: 100 };
  this.stale = false;

  // Widths go on the header cells (table-layout: fixed reads the first
  // row), so a column hidden by a media query (.hide-md, .hide-sm) takes
  // its width with it.
  const table = o.table;
  const head = el('tr');
  this.ths = [];
  for (const c of o.columns) {
    const th = el('th', { className: (c.num ? 'num ' : '') + (c.hide ? 'hide-' + c.hide : '') + (c.col ? ' ' + c.col : ''), attrs: { scope: 'col' } });
    if (c.width) th.style.width = c.width + 'px';
    if (c.sort) {
      th.append(el('button', { className: 'sort', type: 'button', text: c.label, data: { sort: c.sort }, title: 'Sort by ' + c.label.toLowerCase() }));
    } else {
      th.append(c.label ? document.createTextNode(c.label) : el('span', { className: 'sr-only', text: 'Actions' }));
    }
    this.ths.push(th);
    head.append(th);
  }
  // Spacer rows only give height. One cell, no colspan: a colspan counting
  // hidden columns would add phantom columns to the fixed layout.
  const spacer = () => {
    const td = el('td');
    return { body: el('tbody', { className: 'spacer', attrs: { 'aria-hidden': 'true' } }, el('tr', null, td)), td };
  };
  const top = spacer(), bottom = spacer();
  this.topTd = top.td;
  this.bottomTd = bottom.td;
  this.thead = el('thead', null, head);
  this.tbody = el('tbody', { attrs: { id: o.bodyId } });
  table.replaceChildren(this.thead, top.body, this.tbody, bottom.body);
  this.empty = $('.vempty', this.scroll);

  if (o.onSort) {
    this.thead.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-sort]');
      if (b) o.onSort(b.dataset.sort);
    });
  }
  const redraw = () => onNextFrame(this, () => this.render());
  this.scroll.addEventListener('scroll', redraw, { passive: true });
  if (window.ResizeObserver) new ResizeObserver(redraw).observe(this.scroll);
  this.updateSortHeader();
}

VirtualTable.prototype.setPage = function (total, offset, items) {
  this.total = Math.max(0, total | 0);
  this.offset = Math.max(0, offset | 0);
  this.items = Array.isArray(items) ? items : [];
  this.stale = false;
  invalidate(this.o.name);
};

/** Forget the position (new sort or filter): back to the top, ask again. */
VirtualTable.prototype.reset = function () {
  this.scroll.scrollTop = 0;
  this.stale = true;
  this.req = { offset: 0, limit: this.req.limit };
  this.o.onWindow(this.req);
  this.render();
};

VirtualTable.prototype.updateSortHeader = function () {
  const s = this.o.sortState && this.o.sortState();
  this.o.columns.forEach((c, i) => {
    if (!c.sort) return;
    if (s && s.sort === c.sort) this.ths[i].setAttribute('aria-sort', s.order === 'asc' ? 'ascending' : 'descending');
    else this.ths[i].removeAttribute('aria-sort');
  });
};

/* The box fits the rows (a short list leaves no blank area under it),
 * or the empty message, up to the CSS max-height, past which it
 * scrolls; returns the height the rows are seen in. */
const EMPTY_H = 72;
VirtualTable.prototype.fit = function (headH) {
  const sc = this.scroll;
  // Borders, and the scroll bar of a table wider than its panel.
  const frame = sc.offsetHeight - sc.clientHeight;
  const want = Math.ceil(headH + (this.total ? this.total * this.rowH : EMPTY_H) + frame);
  if (this.height !== want) { this.height = want; sc.style.height = want + 'px'; }
  const max = parseFloat(getComputedStyle(sc).maxHeight);
  return (max > 0 ? Math.min(want, max) : want) - frame;
};

VirtualTable.prototype.render = function () {
  const sc = this.scroll, o = this.o, rowH = this.rowH;
  const headH = this.thead.offsetHeight || 34;
  const viewRows = Math.max(1, Math.ceil((this.fit(headH) - headH) / rowH));
  const total = this.total;
  const first = Math.min(Math.floor(sc.scrollTop / rowH), Math.max(0, total - 1));
  const start = Math.max(0, first - 3);
  const end = Math.min(total, first + viewRows + 3);

  this.ensureWindow(first, Math.min(total, first + viewRows), viewRows);

  this.topTd.style.height = start * rowH + 'px';
  this.bottomTd.style.height = Math.max(0, total - end) * rowH + 'px';

  const body = this.tbody;
  const seen = new Set();
  let pos = 0;
  for (let i = start; i < end; i++) {
    const item = this.items[i - this.offset];
    const key = item && i >= this.offset ? o.key(item) : '\u0000' + i;
    let tr = this.rows.get(key);
    if (!tr) {
      tr = item ? this.createRow(item) : this.placeholder();
      this.rows.set(key, tr);
    }
    if (item) { tr._item = item; for (let c = 0; c < o.columns.length; c++) o.columns[c].render(tr.children[c], item, tr); if (o.decorate) o.decorate(tr, item); }
    seen.add(key);
    if (body.children[pos] !== tr) body.insertBefore(tr, body.children[pos] || null);
    pos++;
  }
  for (const [key, tr] of this.rows) if (!seen.has(key)) { tr.remove(); this.rows.delete(key); }

  if (this.empty) {
    const none = total === 0;
    this.empty.hidden = !none;
    if (none) setText(this.empty, o.emptyText());
  }
  sc.classList.toggle('is-stale', this.stale);

  // Measure the real row height once (fonts and zoom decide it).
  if (!this.measured && body.firstChild && !body.firstChild.classList.contains('placeholder')) {
    const h = body.firstChild.getBoundingClientRect().height;
    this.measured = true;
    if (h > 10 && Math.abs(h - rowH) > 0.5) { this.rowH = h; this.render(); }
  }
};

VirtualTable.prototype.createRow = function (item) {
  const tr = el('tr');
  for (const c of this.o.columns) {
    const td = el('td', { className: (c.num ? 'num ' : '') + (c.cls || '') + (c.hide ? ' hide-' + c.hide : '') });
    if (c.init) c.init(td);
    tr.append(td);
  }
  if (this.o.initRow) this.o.initRow(tr, item);
  return tr;
};

VirtualTable.prototype.placeholder = function () {
  const tr = el('tr', { className: 'placeholder', attrs: { 'aria-hidden': 'true' } });
  for (let i = 0; i < this.o.columns.length; i++) tr.append(el('td'));
  return tr;
};

/** Asks the server for a new window when the visible rows near its edge. */
VirtualTable.prototype.ensureWindow = function (first, last, viewRows) {
  const r = this.req;
  const margin = Math.max(50, viewRows * 3);
  const atTop = r.offset === 0;
  const atEnd = r.offset + r.limit >= this.total;
  const covered = (first >= r.offset + (atTop ? 0 : 5)) && (last <= r.offset + r.limit - (atEnd ? 0 : 5));
  const wantLimit = Math.min(500, viewRows + 2 * margin);
  if (covered && r.limit >= Math.min(wantLimit, 100)) return;
  const offset = Math.max(0, first - margin);
  if (offset === r.offset && wantLimit === r.limit) return;
  this.req = { offset, limit: Math.max(wantLimit, 50) };
  this.o.onWindow(this.req);
};
