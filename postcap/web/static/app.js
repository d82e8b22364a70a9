// postcap web page: vanilla JS, no build step, nothing from the network but this server.
// The control token lives in sessionStorage and only ever travels in the
// Authorization header (never in a URL).
'use strict';

const TOKEN_KEY = 'postcap.token';
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  sessions: new Map(),       // id -> session
  current: null,             // the session shown in the live view
  sessionFetchedAt: 0,       // Date.now() when `current` was last refreshed
  rows: new Map(),           // transaction id -> summary shown in the table
  tab: 'requests',
  events: null,              // AbortController of the /events stream
  lastEventId: null,
  overviewTimer: null,
  rpcId: 0,
};

// -- small helpers ------------------------------------------------------------------------

function $(selector) { return document.querySelector(selector); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'onclick') node.addEventListener('click', value);
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function humanBytes(size) {
  if (typeof size !== 'number') return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = size, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function humanMs(ms) {
  if (typeof ms !== 'number') return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = Math.floor(ms / 1000);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

function localTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

function showMessage(text) {
  const box = $('#message');
  box.textContent = text;
  box.hidden = !text;
}

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

class RPCError extends Error {
  constructor(error) {
    super(error.message || 'error');
    this.code = error.code;
    this.data = error.data;
  }
}

class Unauthorized extends Error {}

// -- talking to the server ----------------------------------------------------------------

function authHeaders(extra) {
  return Object.assign({ Authorization: `Bearer ${state.token}` }, extra || {});
}

async function rpc(method, params) {
  const response = await fetch('/rpc', {
    method: 'POST',
    headers: authHeaders({ 'Content-Type': 'application/json' }),
    body: JSON.stringify({ jsonrpc: '2.0', id: ++state.rpcId, method, params: params || {} }),
    cache: 'no-store',
  });
  if (response.status === 401) {
    signOut('The server refused the token; sign in again.');
    throw new Unauthorized('unauthorized');
  }
  const answer = await response.json();
  if (answer.error) throw new RPCError(answer.error);
  return answer.result;
}

function reportError(error) {
  if (error instanceof Unauthorized) return;
  const code = error.code !== undefined ? ` (code ${error.code})` : '';
  showMessage(`${error.message}${code}`);
}

async function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const link = el('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- sign in / out ------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const token = $('#token-input').value.trim();
  const problem = $('#signin-error');
  problem.hidden = true;
  state.token = token;
  try {
    const response = await fetch('/rpc', {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ jsonrpc: '2.0', id: ++state.rpcId, method: 'server.info' }),
    });
    if (response.status === 401) throw new Error('That token was refused.');
    if (!response.ok) throw new Error(`The server answered HTTP ${response.status}.`);
  } catch (error) {
    state.token = null;
    problem.textContent = error.message;
    problem.hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#token-input').value = '';
  await enter();
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.events) state.events.abort();
  state.events = null;
  $('#nav').hidden = true;
  showView('signin');
  const problem = $('#signin-error');
  problem.textContent = reason || '';
  problem.hidden = !reason;
}

async function enter() {
  $('#nav').hidden = false;
  showMessage('');
  followEvents();
  const info = await rpc('server.info');
  await loadSessions();
  if (info.active_session) {
    await openSession(info.active_session.id);
  } else {
    showView('sessions');
  }
}

function showView(name) {
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${name}`;
  $('#corner').hidden = name === 'signin';
}

// -- sessions list ------------------------------------------------------------------------

async function loadSessions() {
  const result = await rpc('session.list', { limit: 200 });
  state.sessions = new Map(result.items.map((s) => [s.id, s]));
  renderSessions();
}

function renderSessions() {
  const body = $('#sessions-table tbody');
  body.replaceChildren();
  const sessions = [...state.sessions.values()].sort((a, b) => (a.started_at < b.started_at ? 1 : -1));
  for (const session of sessions) body.append(sessionRow(session));
}

function sessionRow(session) {
  const name = el('td', { class: 'name' }, el('a', { href: '#', onclick: (e) => { e.preventDefault(); openSession(session.id).catch(reportError); } }, session.name));
  const rename = el('button', { type: 'button', class: 'rename', onclick: () => startRename(session, name) }, 'Rename');
  const remove = el('button', { type: 'button', class: 'delete', disabled: session.state !== 'stopped', onclick: () => deleteSession(session, remove) }, 'Delete');
  return el('tr', { 'data-id': session.id },
    name,
    el('td', {}, session.source),
    el('td', {}, localTime(session.started_at)),
    el('td', {}, humanMs(session.duration_ms)),
    el('td', {}, session.request_count),
    el('td', {}, humanBytes(session.total_bytes)),
    el('td', { class: 'state' }, session.state),
    el('td', {}, rename, ' ', remove));
}

function startRename(session, cell) {
  const input = el('input', { value: session.name, 'aria-label': 'New name', class: 'rename-input' });
  const save = async (event) => {
    event.preventDefault();
    try {
      const updated = await rpc('session.update', { id: session.id, name: input.value });
      sessionChanged(updated);
    } catch (error) { reportError(error); }
  };
  const form = el('form', { class: 'inline' }, input, el('button', { type: 'submit' }, 'Save'));
  form.addEventListener('submit', save);
  cell.replaceChildren(form);
  input.focus();
}

async function deleteSession(session, button) {
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Confirm delete';
    return;
  }
  try {
    await rpc('session.delete', { id: session.id });
    state.sessions.delete(session.id);
    renderSessions();
  } catch (error) { reportError(error); }
}

async function startSession(event) {
  event.preventDefault();
  const options = { capture_cookies: $('#start-cookies').checked };
  const name = $('#start-name').value.trim();
  if (name) options.name = name;
  try {
    const session = await rpc('session.start', options);
    sessionChanged(session);
    $('#start-name').value = '';
    await openSession(session.id);
  } catch (error) { reportError(error); }
}

function sessionChanged(session) {
  state.sessions.set(session.id, session);
  renderSessions();
  if (state.current && state.current.id === session.id) {
    state.current = session;
    state.sessionFetchedAt = Date.now();
    renderLiveHeader();
  }
}

// -- the live session ---------------------------------------------------------------------

async function openSession(id) {
  if (!state.current || state.current.id !== id) resetTable();
  const session = await rpc('session.get', { id });
  state.current = session;
  state.sessionFetchedAt = Date.now();
  table.selectedId = null;
  closeDetail();
  renderLiveHeader();
  $('#collection-export-name').value = session.name;
  showView('live');
  fitSplit();
  await loadRequests();
  if (state.tab === 'overview') await loadOverview();
  if (state.tab === 'cookies') await loadCookies();
}

function renderLiveHeader() {
  const session = state.current;
  $('#live-title').textContent = session ? session.name : 'No session';
  $('#live-state').textContent = session ? session.state : '';
  $('#pause-button').disabled = !session || session.state !== 'running';
  $('#resume-button').disabled = !session || session.state !== 'paused';
  $('#stop-button').disabled = !session || session.state === 'stopped';
  tickCorner();
}

function tickCorner() {
  const session = state.current;
  if (!session) {
    $('#corner-state').textContent = '';
    $('#corner-elapsed').textContent = '';
    $('#corner-size').textContent = '';
    return;
  }
  let elapsed = session.duration_ms || 0;
  if (session.state === 'running') elapsed += Date.now() - state.sessionFetchedAt;
  $('#corner-state').textContent = session.state;
  $('#corner-elapsed').textContent = humanMs(elapsed);
  $('#corner-size').textContent = `${session.request_count} req · ${humanBytes(session.total_bytes)}`;
}

async function lifecycle(action) {
  if (!state.current) return;
  try {
    const session = await rpc(`session.${action}`, { id: state.current.id });
    sessionChanged(session);
  } catch (error) { reportError(error); }
}

function transactionCaptured(summary) {
  const session = state.current;
  if (!session || summary.session_id !== session.id) return;
  session.request_count += 1;
  session.total_bytes += (summary.request_bytes || 0) + (summary.response_bytes || 0);
  tickCorner();
  addArrival(summary);
  if (state.tab === 'overview') scheduleOverview();
}

// -- overview -----------------------------------------------------------------------------

function scheduleOverview() {
  if (state.overviewTimer) return;
  state.overviewTimer = setTimeout(() => {
    state.overviewTimer = null;
    loadOverview().catch(reportError);
  }, 500);
}

function barChart(key, title, counts) {
  const entries = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 20);
  const max = Math.max(1, ...entries.map(([, count]) => count));
  const rowHeight = 20, labelWidth = 150, barWidth = 180;
  const width = labelWidth + barWidth + 60, height = Math.max(1, entries.length) * rowHeight + 4;
  const chart = svg('svg', { 'data-chart': key, width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  entries.forEach(([name, count], index) => {
    const y = index * rowHeight + 2;
    const group = svg('g', { 'data-key': name, 'data-count': count });
    group.append(svg('text', { x: 0, y: y + 13 }, name.length > 22 ? `${name.slice(0, 21)}…` : name));
    group.append(svg('rect', { class: 'bar-fill', x: labelWidth, y, width: Math.max(1, (count / max) * barWidth), height: rowHeight - 6 }));
    group.append(svg('text', { x: labelWidth + (count / max) * barWidth + 6, y: y + 13 }, count));
    chart.append(group);
  });
  return el('div', { class: 'chart' }, el('h3', {}, title), chart);
}

async function loadOverview() {
  if (!state.current) return;
  const overview = await rpc('session.overview', { id: state.current.id });
  $('#overview').replaceChildren(
    barChart('by_method', 'By method', overview.by_method),
    barChart('by_domain', 'By domain', overview.by_domain),
    barChart('by_data_mode', 'By data mode', overview.by_data_mode),
    barChart('by_status', 'By status', overview.by_status));
}

// -- exports ------------------------------------------------------------------------------

async function exportHar() {
  if (!state.current) return;
  try {
    const response = await fetch(`/sessions/${encodeURIComponent(state.current.id)}.har`, { headers: authHeaders(), cache: 'no-store' });
    if (!response.ok) throw new Error(`HAR export failed: HTTP ${response.status}`);
    await download(`${state.current.name || state.current.id}.har`, await response.blob());
  } catch (error) { reportError(error); }
}

async function exportOpenApi() {
  if (!state.current) return;
  try {
    const document_ = await rpc('session.export', { id: state.current.id, format: 'openapi' });
    const blob = new Blob([JSON.stringify(document_, null, 2)], { type: 'application/json' });
    await download(`${state.current.name || state.current.id}.openapi.json`, blob);
  } catch (error) { reportError(error); }
}

// "Export collection" reuses the collection of the name given (by default the
// session's): it is refilled with the session's requests, never duplicated.
async function exportCollection() {
  if (!state.current) return;
  try {
    const name = $('#collection-export-name').value.trim() || state.current.name;
    const ids = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await rpc('request.list', { session_id: state.current.id, limit: 1000, offset });
      ids.push(...page.items.map((item) => item.id));
      if (page.items.length === 0 || ids.length >= page.total) break;
    }
    const existing = (await rpc('collection.list', {})).items.find((c) => c.name === name);
    if (existing) await rpc('collection.delete', { id: existing.id });
    const created = await rpc('collection.create', { name });
    for (let at = 0; at < ids.length; at += 1000) {
      await rpc('collection.add', { id: created.id, request_ids: ids.slice(at, at + 1000) });
    }
    const collection = await rpc('collection.get', { id: created.id });
    await download(`${name}.postman_collection.json`,
      new Blob([JSON.stringify(collection, null, 2)], { type: 'application/json' }));
  } catch (error) { reportError(error); }
}

// -- live events: fetch() streaming, since EventSource cannot send headers ---------------

async function followEvents() {
  if (state.events) state.events.abort();
  const controller = new AbortController();
  state.events = controller;
  while (!controller.signal.aborted && state.token) {
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
      const response = await fetch('/events', { headers, signal: controller.signal, cache: 'no-store' });
      if (response.status === 401) { signOut('The server refused the token; sign in again.'); return; }
      if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
      document.body.dataset.events = 'connected';
      await readEvents(response.body.getReader(), controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    document.body.dataset.events = 'reconnecting';
    await sleep(2000);
  }
}

async function readEvents(reader, signal) {
  const decoder = new TextDecoder();
  let buffer = '';
  let current = { id: null, event: 'message', data: [] };
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      if (line === '') {
        if (current.data.length) handleServerEvent(current);
        current = { id: null, event: 'message', data: [] };
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let data = colon < 0 ? '' : line.slice(colon + 1);
        if (data.startsWith(' ')) data = data.slice(1);
        if (field === 'data') current.data.push(data);
        else if (field === 'event') current.event = data;
        else if (field === 'id') current.id = data;
      }
    }
  }
}

function handleServerEvent(event) {
  if (event.id) state.lastEventId = event.id;
  let data;
  try { data = JSON.parse(event.data.join('\n')); } catch (e) { return; }
  if (event.event === 'transaction') {
    transactionCaptured(data);
  } else if (event.event === 'session' && data.session) {
    const isNew = !state.sessions.has(data.session.id);
    const wasCurrent = state.current && state.current.id === data.session.id;
    if (wasCurrent) {
      // Keep the counts this page has been adding up; the event carries the record.
      sessionChanged(data.session);
      if (data.change === 'cleared') { closeDetail(); loadRequests(false).catch(reportError); }
    } else {
      state.sessions.set(data.session.id, data.session);
      renderSessions();
    }
    if (isNew && data.change === 'deleted') { state.sessions.delete(data.session.id); renderSessions(); }
  } else if (event.event === 'message') {
    messageCaptured(data);
  } else if (event.event === 'cookie') {
    cookieArrived(data);
  } else if (event.event === 'reset') {
    loadRequests().catch(reportError);
  }
}

// -- wiring -------------------------------------------------------------------------------

function selectTab(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll('[data-tab]')) tab.setAttribute('aria-selected', String(tab.dataset.tab === name));
  for (const pane of document.querySelectorAll('.pane')) pane.hidden = pane.id !== `pane-${name}`;
  if (name === 'requests') fitSplit();
  if (name === 'overview') loadOverview().catch(reportError);
  if (name === 'cookies') loadCookies().catch(reportError);
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function init() {
  $('#signin-form').addEventListener('submit', (e) => signIn(e).catch(reportError));
  $('#start-form').addEventListener('submit', (e) => startSession(e));
  $('#sign-out').addEventListener('click', () => signOut(''));
  $('#nav-sessions').addEventListener('click', () => { showView('sessions'); loadSessions().catch(reportError); });
  $('#nav-live').addEventListener('click', () => {
    if (state.current) openSession(state.current.id).catch(reportError); else showView('live');
  });
  $('#pause-button').addEventListener('click', () => lifecycle('pause'));
  $('#resume-button').addEventListener('click', () => lifecycle('resume'));
  $('#stop-button').addEventListener('click', () => lifecycle('stop'));
  $('#export-har').addEventListener('click', exportHar);
  $('#export-collection').addEventListener('click', exportCollection);
  $('#export-openapi').addEventListener('click', exportOpenApi);
  for (const tab of document.querySelectorAll('[data-tab]')) tab.addEventListener('click', () => selectTab(tab.dataset.tab));
  initTable();
  initCookies();
  setInterval(tickCorner, 1000);
  if (state.token) enter().catch(reportError); else showView('signin');
}

document.addEventListener('DOMContentLoaded', init);
