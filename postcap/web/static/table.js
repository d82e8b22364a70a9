// The request table: virtualised rows over windowed request.list fetches.
//
// Rows are cached by their position in capture order (oldest = 0), which never moves
// when new exchanges arrive, so "newest first" is only a mapping of the display index.
// Only the rows in view (plus an overscan) are in the DOM, each ROW_H pixels high.
// Sorting by a column other than Time, or the content-type filter, switch to "local"
// mode: the newest LOCAL_CAP matching rows are loaded and sorted/filtered in the page.
'use strict';

const ROW_H = 24;
const HEAD_H = 26;
const PAGE = 200;
const OVERSCAN = 12;
const LOCAL_CAP = 10000;
const WIDTHS_KEY = 'postcap.columns';

const COLUMNS = [
  { key: 'time', label: 'Time', width: 104 },
  { key: 'method', label: 'Method', width: 66 },
  { key: 'status', label: 'Status', width: 60 },
  { key: 'host', label: 'Host', width: 136 },
  { key: 'path', label: 'Path', width: 0 },      // takes the rest
  { key: 'type', label: 'Type', width: 104 },
  { key: 'size', label: 'Size', width: 68 },
  { key: 'duration', label: 'Duration', width: 80 },
];

const table = {
  total: 0,
  rows: new Map(),        // capture-order index -> summary (server mode)
  known: new Set(),       // ids already counted
  requested: new Map(),   // page number -> time fetched (0 while in flight)
  loading: false,         // a reload is under way: live rows wait for it
  localDirty: false,
  tailTimer: null,
  generation: 0,
  sortKey: 'time',
  sortDir: 'desc',
  local: null,            // array of summaries in local mode
  localNote: '',
  selectedId: null,
  selectedIndex: -1,
  compareWith: null,      // a transaction id marked for "compare"
  frame: 0,
  deepTimer: null,
};

// -- formatting ----------------------------------------------------------------------------

function clockTime(iso) {
  const date = new Date(iso);
  if (isNaN(date)) return iso || '';
  const two = (n) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

function duration(ms) {
  if (typeof ms !== 'number' || ms < 0) return '';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

function urlPath(url) {
  try { const parsed = new URL(url); return parsed.pathname + parsed.search; } catch (e) { return url; }
}

function statusClass(summary) {
  if (summary.status === null || summary.status === undefined) return 'serr';
  return `s${Math.floor(summary.status / 100)}xx`;
}

function cellText(summary, key) {
  switch (key) {
    case 'time': return clockTime(summary.started_at);
    case 'method': return summary.method;
    case 'status': return summary.status === null ? 'error' : String(summary.status);
    case 'host': return summary.host;
    case 'path': return urlPath(summary.url);
    case 'type': return summary.content_type || '';
    case 'size': return humanBytes(summary.response_bytes);
    case 'duration': return duration(summary.duration_ms);
    default: return '';
  }
}

function sortValue(summary, key) {
  switch (key) {
    case 'status': return summary.status === null ? 1000 : summary.status;
    case 'size': return summary.response_bytes || 0;
    case 'duration': return summary.duration_ms || 0;
    case 'time': return summary.started_at;
    default: return cellText(summary, key).toLowerCase();
  }
}

// -- filters -------------------------------------------------------------------------------

function serverFilters() {
  const params = {};
  const query = $('#search').value.trim();
  const method = $('#filter-method').value;
  const status = $('#filter-status').value;
  const host = $('#filter-host').value.trim();
  if (query) params.query = query;
  if (query && $('#search-deep').checked) params.in = ['headers', 'body'];
  if (method) params.method = method;
  if (status) params.status = status;
  if (host) params.domain = host;
  return params;
}

function typeFilter() { return $('#filter-type').value.trim().toLowerCase(); }

function hostMatches(host, domain) {
  const h = (host || '').toLowerCase(), d = domain.toLowerCase().replace(/^\./, '');
  return h === d || h.endsWith(`.${d}`);
}

// true, false, or null when only the server can tell (a header/body search).
function matchesFilters(summary) {
  const wanted = serverFilters();
  if (wanted.method && summary.method.toUpperCase() !== wanted.method) return false;
  if (wanted.status && (summary.status === null || String(summary.status)[0] !== wanted.status[0])) return false;
  if (wanted.domain && !hostMatches(summary.host, wanted.domain)) return false;
  const type = typeFilter();
  if (type && !(summary.content_type || '').includes(type)) return false;
  if (wanted.query && !summary.url.toLowerCase().includes(wanted.query.toLowerCase())) {
    return wanted.in ? null : false;
  }
  return true;
}

function isLocalMode() { return table.sortKey !== 'time' || typeFilter() !== ''; }

// -- data ----------------------------------------------------------------------------------

function rowCount() { return table.local ? table.local.length : table.total; }

function summaryAt(index) {
  if (index < 0 || index >= rowCount()) return null;
  if (table.local) return table.local[index];
  const position = table.sortDir === 'desc' ? table.total - 1 - index : index;
  return table.rows.get(position) || null;
}

function positionOf(index) { return table.sortDir === 'desc' ? table.total - 1 - index : index; }
const displayIndex = positionOf;   // the mapping is its own inverse

// Forget the rows shown (another session is being opened).
function resetTable() {
  table.generation += 1;
  table.total = 0;
  table.rows = new Map();
  table.known = new Set();
  table.requested = new Map();
  table.local = null;
  table.selectedId = null;
  table.selectedIndex = -1;
  $('#table-scroll').scrollTop = 0;
  renderTable();
  updateCount();
}

async function loadRequests(keepScroll) {
  if (!state.current) return;
  const generation = ++table.generation;
  $('#requests-table').setAttribute('aria-busy', 'true');
  const scroller = $('#table-scroll');
  const scrollTop = keepScroll ? scroller.scrollTop : 0;
  table.rows = new Map();
  table.known = new Set();
  table.requested = new Map();
  table.local = null;
  table.loading = true;
  try {
    if (isLocalMode()) {
      await loadLocal(generation);
    } else {
      const result = await rpc('request.list', Object.assign({ session_id: state.current.id, limit: 1, order: 'asc' }, serverFilters()));
      if (generation !== table.generation) return;
      table.total = result.total;
    }
  } finally {
    if (generation === table.generation) table.loading = false;
  }
  sizeTable();
  const toBottom = !keepScroll && !table.local && table.sortDir === 'asc' && $('#follow').checked;
  scroller.scrollTop = toBottom ? scroller.scrollHeight : scrollTop;
  findSelected();
  renderTable();
  updateCount();
  $('#requests-table').setAttribute('aria-busy', 'false');
}

// After live rows: ask the server for the count once things settle, and refetch the
// newest page when it disagrees (a row that arrived during a reload, say).
function scheduleTailCheck() {
  if (table.tailTimer || table.local) return;
  table.tailTimer = setTimeout(async () => {
    table.tailTimer = null;
    const generation = table.generation;
    try {
      const result = await rpc('request.list', Object.assign({ session_id: state.current.id, limit: 1, order: 'asc' }, serverFilters()));
      if (generation !== table.generation || table.loading || result.total === table.total) return;
      const from = Math.floor(Math.max(0, Math.min(result.total, table.total) - 1) / PAGE);
      for (const [position] of table.rows) if (position >= from * PAGE) table.rows.delete(position);
      for (const page of [...table.requested.keys()]) if (page >= from) table.requested.delete(page);
      table.total = result.total;
      table.known = new Set([...table.rows.values()].map((summary) => summary.id));
      updateCount();
      scheduleRender();
    } catch (error) { reportError(error); }
  }, 1500);
}

async function loadLocal(generation) {
  const items = [];
  let total = 0;
  for (let offset = 0; offset < LOCAL_CAP; offset += 1000) {
    const result = await rpc('request.list', Object.assign({ session_id: state.current.id, limit: 1000, offset, order: 'desc' }, serverFilters()));
    if (generation !== table.generation) return;
    total = result.total;
    items.push(...result.items);
    if (result.items.length < 1000) break;
  }
  const type = typeFilter();
  const kept = type ? items.filter((s) => (s.content_type || '').includes(type)) : items;
  table.localNote = total > items.length ? ` (sorted and filtered within the newest ${items.length.toLocaleString()} of ${total.toLocaleString()})` : '';
  table.local = kept;
  for (const summary of kept) table.known.add(summary.id);
  sortLocal();
}

function sortLocal() {
  const key = table.sortKey, sign = table.sortDir === 'asc' ? 1 : -1;
  table.local.sort((a, b) => {
    const x = sortValue(a, key), y = sortValue(b, key);
    if (x < y) return -sign;
    if (x > y) return sign;
    return a.started_at < b.started_at ? sign : -sign;
  });
}

// Fetch a page of rows unless it is in flight, or was fetched less than a second ago.
function ensurePage(page) {
  const fetched = table.requested.get(page);
  if (fetched === 0 || (fetched && Date.now() - fetched < 1000) || !state.current || table.loading) return;
  table.requested.set(page, 0);
  const generation = table.generation;
  rpc('request.list', Object.assign({ session_id: state.current.id, order: 'asc', limit: PAGE, offset: page * PAGE }, serverFilters()))
    .then((result) => {
      if (generation !== table.generation) return;
      table.requested.set(page, Date.now());
      result.items.forEach((summary, k) => {
        table.rows.set(page * PAGE + k, summary);
        table.known.add(summary.id);
        if (summary.id === table.selectedId) table.selectedIndex = displayIndex(page * PAGE + k);
      });
      if (result.total > table.total) { table.total = result.total; updateCount(); }
      scheduleRender();
    })
    .catch((error) => { table.requested.delete(page); reportError(error); });
}

function updateCount() {
  const shown = rowCount();
  $('#request-count').textContent = `${shown.toLocaleString()} request${shown === 1 ? '' : 's'}${table.local ? table.localNote : ''}`;
}

// A live capture: counted and shown at once when it matches the filters.
function addArrival(summary) {
  if (table.loading) { scheduleTailCheck(); return; }
  if (table.known.has(summary.id)) return;
  const match = matchesFilters(summary);
  if (match === null) { scheduleDeepReload(); return; }
  if (!match) return;
  table.known.add(summary.id);
  const scroller = $('#table-scroll');
  const follow = $('#follow').checked;
  if (table.local) {
    table.local.push(summary);
    table.localDirty = true;
  } else {
    table.rows.set(table.total, summary);
    table.total += 1;
    sizeTable();
    scheduleTailCheck();
    if (table.sortDir === 'desc') {
      if (table.selectedIndex >= 0) table.selectedIndex += 1;
      if (!follow && scroller.scrollTop > 0) scroller.scrollTop += ROW_H;
    }
  }
  if (follow && !table.local) scroller.scrollTop = table.sortDir === 'desc' ? 0 : scroller.scrollHeight;
  updateCount();
  scheduleRender();
}

function scheduleDeepReload() {
  if (table.deepTimer) return;
  table.deepTimer = setTimeout(() => { table.deepTimer = null; loadRequests(true).catch(reportError); }, 1000);
}

function findSelected() {
  if (!table.selectedId) { table.selectedIndex = -1; return; }
  if (table.local) { table.selectedIndex = table.local.findIndex((s) => s.id === table.selectedId); return; }
  for (const [position, summary] of table.rows) {
    if (summary.id === table.selectedId) { table.selectedIndex = displayIndex(position); return; }
  }
  table.selectedIndex = -1;
}

// -- rendering -----------------------------------------------------------------------------

function scheduleRender() {
  if (table.frame) return;
  table.frame = requestAnimationFrame(() => { table.frame = 0; renderTable(); });
}

function sizeTable() { $('#table-sizer').style.height = `${HEAD_H + rowCount() * ROW_H}px`; }

function renderTable() {
  const scroller = $('#table-scroll');
  if (table.localDirty) { table.localDirty = false; sortLocal(); findSelected(); }
  const count = rowCount();
  sizeTable();
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_H) - OVERSCAN);
  const last = Math.min(count, first + Math.ceil(scroller.clientHeight / ROW_H) + 2 * OVERSCAN);
  $('#requests-table').style.top = `${first * ROW_H}px`;
  const rows = [];
  for (let index = first; index < last; index += 1) {
    const summary = summaryAt(index);
    if (!summary) {
      ensurePage(Math.floor(positionOf(index) / PAGE));
      rows.push(el('tr', { class: 'row loading', 'data-index': index }, el('td', { colspan: COLUMNS.length }, '…')));
      continue;
    }
    const row = el('tr', { class: `row ${statusClass(summary)}${summary.id === table.selectedId ? ' selected' : ''}`, 'data-id': summary.id, 'data-index': index });
    for (const column of COLUMNS) {
      const text = cellText(summary, column.key);
      row.append(el('td', { class: `c-${column.key}`, title: column.key === 'path' ? summary.url : text }, text));
    }
    rows.push(row);
  }
  $('#requests-table tbody').replaceChildren(...rows);
}

function renderHead() {
  const saved = JSON.parse(localStorage.getItem(WIDTHS_KEY) || '{}');
  for (const column of COLUMNS) if (saved[column.key]) column.width = saved[column.key];
  const cols = COLUMNS.map((column) => el('col', { class: `c-${column.key}` }));
  $('#requests-table colgroup').replaceChildren(...cols);
  const heads = COLUMNS.map((column) => {
    const arrow = table.sortKey === column.key ? (table.sortDir === 'desc' ? ' ▼' : ' ▲') : '';
    const th = el('th', { 'data-key': column.key, 'aria-sort': arrow ? (table.sortDir === 'desc' ? 'descending' : 'ascending') : null },
      el('button', { type: 'button', class: 'sort', onclick: () => sortBy(column.key) }, column.label + arrow));
    if (column.key !== 'path') {
      const grip = el('span', { class: 'grip', 'aria-hidden': 'true' });
      grip.addEventListener('pointerdown', (event) => startResize(event, column));
      th.append(grip);
    }
    return th;
  });
  $('#requests-table thead tr').replaceChildren(...heads);
  applyWidths();
}

function applyWidths() {
  const cols = $('#requests-table colgroup').children;
  let sum = 0;
  COLUMNS.forEach((column, index) => {
    cols[index].style.width = column.width ? `${column.width}px` : '';
    sum += column.width || 0;
  });
  $('#requests-table').style.minWidth = `${sum + 120}px`;
}

function startResize(event, column) {
  event.preventDefault();
  const startX = event.clientX, startWidth = column.width;
  const move = (e) => { column.width = Math.max(40, Math.round(startWidth + e.clientX - startX)); applyWidths(); };
  const up = () => {
    window.removeEventListener('pointermove', move);
    window.removeEventListener('pointerup', up);
    localStorage.setItem(WIDTHS_KEY, JSON.stringify(Object.fromEntries(COLUMNS.map((c) => [c.key, c.width]))));
  };
  window.addEventListener('pointermove', move);
  window.addEventListener('pointerup', up);
}

function sortBy(key) {
  if (table.sortKey === key) table.sortDir = table.sortDir === 'desc' ? 'asc' : 'desc';
  else { table.sortKey = key; table.sortDir = key === 'time' ? 'desc' : 'asc'; }
  renderHead();
  loadRequests(false).catch(reportError);
}

// -- selection and keyboard ----------------------------------------------------------------

function selectIndex(index, open) {
  const count = rowCount();
  if (!count) return;
  index = Math.max(0, Math.min(count - 1, index));
  const summary = summaryAt(index);
  table.selectedIndex = index;
  table.selectedId = summary ? summary.id : null;
  const scroller = $('#table-scroll');
  const top = index * ROW_H, visible = scroller.clientHeight - HEAD_H;
  if (top < scroller.scrollTop) scroller.scrollTop = top;
  else if (top + ROW_H > scroller.scrollTop + visible) scroller.scrollTop = top + ROW_H - visible;
  renderTable();
  if (summary && (open || !$('#detail').hidden)) openDetailSoon(summary.id, open);
}

let detailTimer = null;
function openDetailSoon(id, now) {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => openDetail(id).catch(reportError), now ? 0 : 120);
}

function tableKeys(event) {
  const focused = document.activeElement ? document.activeElement.tagName : '';
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(focused);
  if (event.key === 'Enter' && /^(BUTTON|A)$/.test(focused)) return;   // the button's own Enter
  if (event.key === '/' && !typing && !$('#view-live').hidden) { event.preventDefault(); $('#search').focus(); return; }
  if (event.key === 'Escape') {
    if (typing) document.activeElement.blur();
    else closeDetail();
    return;
  }
  if (typing || $('#view-live').hidden || $('#pane-requests').hidden) return;
  if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    const step = event.key === 'ArrowDown' ? 1 : -1;
    selectIndex(table.selectedIndex < 0 ? 0 : table.selectedIndex + step, false);
  } else if (event.key === 'Enter' && table.selectedId) {
    event.preventDefault();
    openDetail(table.selectedId).catch(reportError);
  }
}

function closeDetail() {
  if ($('#detail').contains(document.activeElement)) $('#table-scroll').focus();
  $('#detail').hidden = true;
  $('#splitter').hidden = true;
  $('#split').classList.remove('open');
}

// -- the split between table and detail -----------------------------------------------------

function fitSplit() {
  const split = $('#split');
  if (!split || split.offsetParent === null) return;
  const top = split.getBoundingClientRect().top + window.scrollY;
  split.style.setProperty('--split-h', `${Math.max(240, window.innerHeight - top - 12)}px`);
  scheduleRender();
}

function startSplitDrag(event) {
  event.preventDefault();
  const split = $('#split');
  const stacked = window.matchMedia('(max-width: 999px)').matches;
  const box = split.getBoundingClientRect();
  const move = (e) => {
    if (stacked) split.style.setProperty('--table-h', `${Math.max(120, Math.round(e.clientY - box.top))}px`);
    else split.style.setProperty('--detail-w', `${Math.max(280, Math.min(box.width - 280, Math.round(box.right - e.clientX)))}px`);
    scheduleRender();
  };
  const up = () => { window.removeEventListener('pointermove', move); window.removeEventListener('pointerup', up); };
  window.addEventListener('pointermove', move);
  window.addEventListener('pointerup', up);
}

// Scrolling away from the newest rows turns "follow newest" off; back to them, on.
function followFromScroll() {
  if (table.local) return;
  const scroller = $('#table-scroll');
  const atNewest = table.sortDir === 'desc'
    ? scroller.scrollTop < ROW_H / 2
    : scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - ROW_H / 2;
  $('#follow').checked = atNewest;
}

function initTable() {
  renderHead();
  const scroller = $('#table-scroll');
  scroller.addEventListener('scroll', () => { followFromScroll(); scheduleRender(); }, { passive: true });
  $('#requests-table tbody').addEventListener('click', (event) => {
    const row = event.target.closest('tr.row');
    if (!row || !row.dataset.id) return;
    selectIndex(Number(row.dataset.index), true);
  });
  const reload = debounce(() => loadRequests(false).catch(reportError), 250);
  const refilter = () => { $('#requests-table').setAttribute('aria-busy', 'true'); reload(); };
  for (const id of ['#search', '#filter-host', '#filter-type']) $(id).addEventListener('input', refilter);
  for (const id of ['#filter-method', '#filter-status', '#search-deep']) $(id).addEventListener('change', refilter);
  $('#filter-form').addEventListener('submit', (e) => { e.preventDefault(); refilter(); });
  $('#follow').addEventListener('change', () => { if ($('#follow').checked) scroller.scrollTop = table.sortDir === 'desc' ? 0 : scroller.scrollHeight; });
  $('#splitter').addEventListener('pointerdown', startSplitDrag);
  document.addEventListener('keydown', tableKeys);
  window.addEventListener('resize', fitSplit);
}
