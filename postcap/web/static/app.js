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
  selected: null,
  tab: 'requests',
  events: null,              // AbortController of the /events stream
  arriving: null,            // live summaries received while request.list is in flight
  lastEventId: null,
  overviewTimer: null,
  compareWith: null,         // a transaction id marked for "compare"
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
  const session = await rpc('session.get', { id });
  state.current = session;
  state.sessionFetchedAt = Date.now();
  state.selected = null;
  $('#detail').hidden = true;
  renderLiveHeader();
  showView('live');
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

function filters() {
  const params = {};
  const query = $('#search').value.trim();
  const method = $('#filter-method').value;
  const status = $('#filter-status').value;
  if (query) params.query = query;
  if (method) params.method = method;
  if (status) params.status = status;
  return params;
}

function matchesFilters(summary) {
  const wanted = filters();
  if (wanted.query && !summary.url.toLowerCase().includes(wanted.query.toLowerCase())) return false;
  if (wanted.method && summary.method !== wanted.method) return false;
  if (wanted.status) {
    if (summary.status === null || String(summary.status)[0] !== wanted.status[0]) return false;
  }
  return true;
}

async function loadRequests() {
  if (!state.current) return;
  // Rows that arrive live while the list is being fetched are kept, not lost.
  const arrived = [];
  state.arriving = arrived;
  let result;
  try {
    result = await rpc('request.list', Object.assign({ session_id: state.current.id, limit: 1000 }, filters()));
  } finally {
    if (state.arriving === arrived) state.arriving = null;
  }
  state.rows = new Map();
  $('#requests-table tbody').replaceChildren();
  for (const summary of result.items) addRow(summary);
  for (const summary of arrived) if (matchesFilters(summary)) addRow(summary);
  $('#request-count').textContent = `${Math.max(result.total, state.rows.size)} requests`;
}

function addRow(summary) {
  if (state.rows.has(summary.id)) return;
  state.rows.set(summary.id, summary);
  const row = el('tr', { 'data-id': summary.id, onclick: () => openDetail(summary.id).catch(reportError) },
    el('td', {}, new Date(summary.started_at).toLocaleTimeString()),
    el('td', { class: 'method' }, summary.method),
    el('td', { class: 'status' }, summary.status === null ? (summary.error || '—') : summary.status),
    el('td', {}, summary.host),
    el('td', { class: 'url', title: summary.url }, summary.url),
    el('td', {}, humanMs(summary.duration_ms)),
    el('td', {}, humanBytes(summary.response_bytes)));
  $('#requests-table tbody').append(row);
  $('#request-count').textContent = `${state.rows.size} requests`;
}

function transactionCaptured(summary) {
  const session = state.current;
  if (!session || summary.session_id !== session.id) return;
  session.request_count += 1;
  session.total_bytes += (summary.request_bytes || 0) + (summary.response_bytes || 0);
  tickCorner();
  if (state.arriving) state.arriving.push(summary);
  if (matchesFilters(summary)) addRow(summary);
  if (state.tab === 'overview') scheduleOverview();
}

// -- request detail -----------------------------------------------------------------------

function headerTable(headers) {
  return el('table', { class: 'headers' }, ...headers.map(([name, value]) => el('tr', {}, el('td', {}, name), el('td', {}, value))));
}

function headerValue(headers, wanted) {
  const found = (headers || []).find(([name]) => name.toLowerCase() === wanted);
  return found ? found[1] : '';
}

function prettyMarkup(text) {
  let depth = 0;
  return text.replace(/>\s*</g, '>\n<').split('\n').map((line) => {
    const trimmed = line.trim();
    if (/^<\//.test(trimmed)) depth = Math.max(0, depth - 1);
    const out = '  '.repeat(depth) + trimmed;
    if (/^<[^!?/][^>]*[^/]>$/.test(trimmed) && !/^<(br|hr|img|input|meta|link)\b/i.test(trimmed) && !/<\//.test(trimmed)) depth += 1;
    return out;
  }).join('\n');
}

function bodyView(part, contentType) {
  const sent = part.body || {};
  if (!sent.size) return el('p', { class: 'muted' }, 'No body.');
  const notes = [`${humanBytes(sent.size)}`];
  if (sent.truncated) notes.push('truncated');
  if (sent.captured === false) return el('p', {}, `${notes.join(', ')}, not stored.`);
  // A body sent with a Content-Encoding is shown decoded (the store decoded it).
  let body = sent;
  if (sent.content_encoding && sent.decoded) {
    body = sent.decoded;
    notes.push(`${sent.content_encoding}, ${humanBytes(body.size)} decoded${body.truncated ? ' (cut short)' : ''}`);
  } else if (sent.content_encoding && sent.decode_error) {
    notes.push(`${sent.content_encoding}, not decoded: ${sent.decode_error}`);
  }
  const type = contentType.toLowerCase();
  if (type.startsWith('image/') && body.encoding === 'base64') {
    const mime = type.split(';')[0].trim();
    return el('div', {}, el('img', { src: `data:${mime};base64,${body.text}`, alt: 'response image' }), el('p', {}, notes.join(', ')));
  }
  let text = body.text || '';
  if (body.encoding === 'base64') return el('p', {}, `${notes.join(', ')}, binary.`);
  if (/json/.test(type)) {
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as sent */ }
  } else if (/(xml|html)/.test(type)) {
    text = prettyMarkup(text);
  }
  return el('div', {}, el('pre', { class: 'body' }, text), el('p', {}, notes.join(', ')));
}

function waterfall(timings) {
  const phases = ['connect', 'tls', 'send', 'wait', 'receive'];
  const values = phases.map((phase) => Math.max(0, Number(timings[`${phase}_ms`]) || 0));
  const total = values.reduce((a, b) => a + b, 0);
  const width = 320, scale = total > 0 ? width / total : 0;
  const chart = svg('svg', { class: 'waterfall', width: width + 140, height: phases.length * 18 + 4, role: 'img', 'aria-label': 'timings' });
  let x = 0;
  phases.forEach((phase, index) => {
    const y = index * 18 + 2;
    chart.append(svg('text', { x: 0, y: y + 12 }, phase));
    chart.append(svg('rect', { class: `t-${phase}`, x: 60 + x * scale, y, width: Math.max(values[index] * scale, values[index] > 0 ? 1 : 0), height: 14, 'data-phase': phase }));
    chart.append(svg('text', { x: 60 + width + 8, y: y + 12 }, `${values[index].toFixed(1)} ms`));
    x += values[index];
  });
  return chart;
}

async function openDetail(id) {
  const detail = await rpc('request.get', { id });
  state.selected = id;
  for (const row of document.querySelectorAll('#requests-table tbody tr')) row.classList.toggle('selected', row.dataset.id === id);
  const pane = $('#detail');
  const request = detail.request || { headers: [], body: {} };
  const response = detail.response;
  const parts = [
    requestTools(detail),
    el('h3', {}, `${detail.method} ${detail.url}`),
    el('p', {}, detail.status === null ? `No response: ${detail.error || 'unknown'}` : `Status ${detail.status}${response && response.reason ? ' ' + response.reason : ''} · ${humanMs(detail.duration_ms)}`),
    el('h3', {}, 'Timings'), waterfall(detail.timings || {}),
    el('h3', {}, 'Request headers'), headerTable(request.headers || []),
    el('h3', {}, 'Request body'), bodyView(request, headerValue(request.headers, 'content-type')),
  ];
  if (response) {
    parts.push(el('h3', {}, 'Response headers'), headerTable(response.headers || []),
      el('h3', {}, 'Response body'), bodyView(response, headerValue(response.headers, 'content-type') || detail.content_type || ''));
  }
  if (detail.websocket) parts.push(...websocketView(id, detail.websocket));
  pane.replaceChildren(...parts);
  pane.dataset.id = id;
  pane.hidden = false;
}

// -- copy as curl, compare ----------------------------------------------------------------

function requestTools(detail) {
  const marked = state.compareWith;
  return el('div', { class: 'request-tools' },
    el('button', { type: 'button', id: 'copy-curl', onclick: () => copyAsCurl(detail.id) }, 'Copy as curl'),
    el('button', { type: 'button', id: 'compare-mark', onclick: () => { state.compareWith = detail.id; showMessage('Marked for comparison: open another request and press Compare'); } }, 'Mark for compare'),
    marked && marked !== detail.id
      ? el('button', { type: 'button', id: 'compare-button', onclick: () => compare(marked, detail.id) }, 'Compare with marked')
      : null);
}

async function copyAsCurl(id) {
  try {
    const command = await rpc('request.export', { id, format: 'curl' });
    $('#detail').append(el('pre', { id: 'curl-command' }, command));
    if (navigator.clipboard) await navigator.clipboard.writeText(command).catch(() => null);
    showMessage('curl command copied');
  } catch (error) { reportError(error); }
}

function diffLines(diff) {
  if (diff.same) return ['No differences.'];
  const lines = [];
  for (const key of ['method', 'status']) if (diff[key]) lines.push(`${key}: ${diff[key].a} → ${diff[key].b}`);
  if (diff.url) {
    lines.push(`url: ${diff.url.a} → ${diff.url.b}`);
    for (const q of diff.url.query) lines.push(`  query ${q.name} ${q.change}: ${q.a.join(', ') || '-'} → ${q.b.join(', ') || '-'}`);
  }
  for (const key of ['request_headers', 'response_headers']) {
    for (const h of diff[key]) lines.push(`${key.replace('_', ' ')} ${h.name} ${h.change}: ${h.a.join(', ') || '-'} → ${h.b.join(', ') || '-'}`);
  }
  for (const key of ['request_body', 'response_body']) {
    const body = diff[key];
    if (!body) continue;
    if (body.kind === 'json') for (const c of body.changes) lines.push(`${key.replace('_', ' ')} ${c.path} ${c.change}: ${JSON.stringify(c.a)} → ${JSON.stringify(c.b)}`);
    else if (body.kind === 'text') lines.push(`${key.replace('_', ' ')}:`, body.unified);
    else lines.push(`${key.replace('_', ' ')}: ${body.a.size} bytes (${body.a.sha256.slice(0, 12)}) → ${body.b.size} bytes (${body.b.sha256.slice(0, 12)})`);
  }
  return lines;
}

async function compare(a, b) {
  try {
    const diff = await rpc('request.diff', { a, b });
    const pane = $('#detail');
    pane.replaceChildren(el('h3', {}, 'Compared'), el('pre', { id: 'compare-result' }, diffLines(diff).join('\n')),
      el('button', { type: 'button', onclick: () => openDetail(b) }, 'Back to the request'));
  } catch (error) { reportError(error); }
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
  const chart = svg('svg', { 'data-chart': key, width: labelWidth + barWidth + 60, height: Math.max(1, entries.length) * rowHeight + 4, role: 'img', 'aria-label': title });
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

// -- WebSocket messages (text only: payloads never become markup) ------------------------

function messageRow(message) {
  const arrow = message.direction === 'client' ? '\u2191 sent' : '\u2193 received';
  let data = message.encoding === 'base64' ? `[base64] ${message.text}` : message.text;
  if (message.code !== undefined) data = `${message.code} ${data}`.trim();
  if (data.length > 500) data = data.slice(0, 500) + '\u2026';
  const size = humanBytes(message.size) + (message.truncated ? ' (truncated)' : '');
  return el('tr', { class: `ws-${message.direction}` },
    el('td', {}, localTime(message.at)), el('td', {}, arrow), el('td', {}, message.type),
    el('td', {}, size), el('td', { class: 'ws-data' }, data));
}

function websocketView(id, websocket) {
  const body = el('tbody', {}, ...websocket.messages.map(messageRow));
  const table = el('table', { class: 'messages', id: 'ws-messages' },
    el('thead', {}, el('tr', {}, ...['Time', 'Direction', 'Type', 'Size', 'Data'].map((h) => el('th', {}, h)))), body);
  const ended = websocket.closed_by || websocket.close_code !== null
    ? `Closed${websocket.closed_by ? ' by the ' + websocket.closed_by : ''}${websocket.close_code !== null ? ' with code ' + websocket.close_code : ''}.`
    : 'Open.';
  const parts = [el('h3', {}, `WebSocket messages (${websocket.message_count})`), el('p', { id: 'ws-state' }, ended), table];
  if (websocket.message_count > websocket.messages.length) {
    const more = el('button', { type: 'button', onclick: async () => {
      const page = await rpc('request.messages', { id, offset: body.children.length, limit: 1000 });
      body.append(...page.items.map(messageRow));
      if (body.children.length >= page.total) more.remove();
    } }, 'Load more');
    parts.push(more);
  }
  return parts;
}

function messageCaptured(message) {
  const pane = $('#detail');
  if (pane.hidden || pane.dataset.id !== message.transaction_id) return;
  const body = $('#ws-messages tbody');
  if (body) body.append(messageRow(message));
}

// -- cookies ------------------------------------------------------------------------------

async function loadCookies() {
  if (!state.current) return;
  const captured = $('#cookies-table tbody');
  const jar = $('#jar-table tbody');
  try {
    const result = await rpc('cookie.list', { session_id: state.current.id });
    captured.replaceChildren(...result.items.map(cookieRow));
  } catch (error) { captured.replaceChildren(el('tr', {}, el('td', { colspan: 6 }, error.message))); }
  try {
    const result = await rpc('cookiejar.list', {});
    jar.replaceChildren(...result.items.map((c) => el('tr', {}, el('td', {}, c.domain), el('td', {}, c.path), el('td', {}, c.name), el('td', {}, c.value), el('td', {}, c.expires || 'session'))));
  } catch (error) { jar.replaceChildren(el('tr', {}, el('td', { colspan: 5 }, error.message))); }
}

function cookieRow(cookie) {
  const add = el('button', { type: 'button', class: 'add-to-jar', onclick: async () => {
    try {
      await rpc('cookiejar.add', { cookie_ids: [cookie.id] });
      add.textContent = 'Added';
      add.disabled = true;
      await loadCookies();
    } catch (error) { reportError(error); }
  } }, 'Add to jar');
  return el('tr', { 'data-id': cookie.id }, el('td', {}, cookie.source), el('td', {}, cookie.domain), el('td', {}, cookie.path), el('td', {}, cookie.name), el('td', {}, cookie.value), el('td', {}, add));
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

async function exportCollection() {
  if (!state.current) return;
  try {
    const ids = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await rpc('request.list', { session_id: state.current.id, limit: 1000, offset });
      ids.push(...page.items.map((item) => item.id));
      if (page.items.length === 0 || ids.length >= page.total) break;
    }
    const created = await rpc('collection.create', { name: state.current.name });
    if (ids.length) await rpc('collection.add', { id: created.id, request_ids: ids });
    const collection = await rpc('collection.get', { id: created.id });
    await download(`${state.current.name || created.id}.postman_collection.json`,
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
    } else {
      state.sessions.set(data.session.id, data.session);
      renderSessions();
    }
    if (isNew && data.change === 'deleted') { state.sessions.delete(data.session.id); renderSessions(); }
  } else if (event.event === 'message') {
    messageCaptured(data);
  } else if (event.event === 'cookie') {
    if (state.tab === 'cookies' && state.current && data.session_id === state.current.id) $('#cookies-table tbody').append(cookieRow(data));
  } else if (event.event === 'reset') {
    loadRequests().catch(reportError);
  }
}

// -- wiring -------------------------------------------------------------------------------

function selectTab(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll('[data-tab]')) tab.setAttribute('aria-selected', String(tab.dataset.tab === name));
  for (const pane of document.querySelectorAll('.pane')) pane.hidden = pane.id !== `pane-${name}`;
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
  const refilter = debounce(() => loadRequests().catch(reportError), 250);
  $('#search').addEventListener('input', refilter);
  $('#filter-method').addEventListener('change', refilter);
  $('#filter-status').addEventListener('change', refilter);
  $('#filter-form').addEventListener('submit', (e) => { e.preventDefault(); refilter(); });
  setInterval(tickCorner, 1000);
  if (state.token) enter().catch(reportError); else showView('signin');
}

document.addEventListener('DOMContentLoaded', init);
