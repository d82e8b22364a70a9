// The request detail: tabs (Headers, Body, Timing, Cookies, Messages) and actions
// (replay, edit and replay, copy as code, compare, add to a collection, delete).
// Everything captured goes in as text (textContent), never as HTML.
'use strict';

const PIECE = 256 * 1024;       // characters of a body rendered at a time
const HEX_PIECE = 16 * 1024;    // bytes of a hex dump rendered at a time
const DETAIL_TABS = ['headers', 'body', 'timing', 'cookies', 'messages'];

const detailState = { tab: 'headers', detail: null, blobUrls: [] };

function copyText(text, button) {
  const done = () => { if (button) { button.textContent = 'Copied'; setTimeout(() => { button.textContent = 'Copy'; }, 1200); } };
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => null);
}

function copyButton(textOf) {
  const button = el('button', { type: 'button', class: 'copy' }, 'Copy');
  button.addEventListener('click', () => copyText(textOf(), button));
  return button;
}

function headerTable(headers) {
  return el('table', { class: 'headers' }, ...headers.map(([name, value]) => el('tr', {}, el('th', { scope: 'row' }, name), el('td', {}, value))));
}

function headerValue(headers, wanted) {
  const found = (headers || []).find(([name]) => name.toLowerCase() === wanted);
  return found ? found[1] : '';
}

// -- body views ----------------------------------------------------------------------------

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

function prettyText(text, type) {
  if (/json/.test(type)) {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }
  if (/x-www-form-urlencoded/.test(type)) {
    try { return [...new URLSearchParams(text)].map(([k, v]) => `${k} = ${v}`).join('\n'); } catch (e) { return text; }
  }
  if (/(xml|html)/.test(type)) return prettyMarkup(text);
  return text;
}

function bytesOf(body) {
  if (body.encoding === 'base64') {
    const raw = atob(body.text || '');
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }
  return new TextEncoder().encode(body.text || '');
}

function hexDump(bytes, start, end) {
  const lines = [];
  for (let offset = start; offset < end; offset += 16) {
    const chunk = bytes.subarray(offset, Math.min(offset + 16, end));
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...chunk].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

// A <pre> that shows `total` units `piece` at a time, with a "Show more" button.
function piecewise(total, piece, render, unit) {
  const pre = el('pre', { class: 'body' });
  const more = el('button', { type: 'button', class: 'more' });
  let shown = 0;
  const step = () => {
    const next = Math.min(total, shown + piece);
    pre.append(document.createTextNode(render(shown, next)));
    shown = next;
    more.hidden = shown >= total;
    more.textContent = `Show more (${humanBytes(total - shown).replace(' B', '')} ${unit} left)`;
  };
  more.addEventListener('click', step);
  step();
  return el('div', {}, pre, more);
}

function bodyView(part, contentType, label) {
  const sent = (part && part.body) || {};
  const box = el('section', { class: 'body-part' }, el('h4', {}, label));
  if (!sent.size) { box.append(el('p', { class: 'muted' }, 'No body.')); return box; }
  const notes = [humanBytes(sent.size)];
  if (sent.truncated) notes.push('truncated');
  if (sent.captured === false) { box.append(el('p', {}, `${notes.join(', ')}, not stored.`)); return box; }
  let body = sent;
  if (sent.content_encoding && sent.decoded) {
    body = sent.decoded;
    notes.push(`${sent.content_encoding}, ${humanBytes(body.size)} decoded${body.truncated ? ' (cut short)' : ''}`);
  } else if (sent.content_encoding && sent.decode_error) {
    notes.push(`${sent.content_encoding}, not decoded: ${sent.decode_error}`);
  }
  const type = (contentType || '').toLowerCase();
  const isImage = type.startsWith('image/');
  const binary = body.encoding === 'base64';
  const modes = [...(isImage ? ['image'] : []), ...(binary ? [] : ['pretty', 'raw']), 'hex'];
  const view = el('div', { class: 'body-view' });
  const show = (mode) => {
    for (const b of picker.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.mode === mode));
    if (mode === 'image') {
      const url = URL.createObjectURL(new Blob([bytesOf(body)], { type: type.split(';')[0].trim() }));
      detailState.blobUrls.push(url);
      view.replaceChildren(el('img', { src: url, alt: `${label} image` }));
    } else if (mode === 'hex') {
      const bytes = bytesOf(body);
      view.replaceChildren(piecewise(bytes.length, HEX_PIECE, (a, b) => `${hexDump(bytes, a, b)}\n`, 'bytes'));
    } else {
      const text = mode === 'pretty' ? prettyText(body.text || '', type) : (body.text || '');
      view.replaceChildren(piecewise(text.length, PIECE, (a, b) => text.slice(a, b), 'chars'));
    }
  };
  const picker = el('div', { class: 'modes', role: 'group', 'aria-label': `${label} view` },
    ...modes.map((mode) => el('button', { type: 'button', 'data-mode': mode, onclick: () => show(mode) }, mode)),
    copyButton(() => body.text || ''));
  box.append(picker, view, el('p', { class: 'muted' }, notes.join(', ')));
  show(modes[0]);
  return box;
}

// -- timing, cookies, messages -------------------------------------------------------------

function waterfall(timings) {
  const phases = ['connect', 'tls', 'send', 'wait', 'receive'];
  const values = phases.map((phase) => Math.max(0, Number(timings[`${phase}_ms`]) || 0));
  const total = values.reduce((a, b) => a + b, 0);
  const width = 320, scale = total > 0 ? width / total : 0;
  const chart = svg('svg', { class: 'waterfall', viewBox: `0 0 ${width + 150} ${phases.length * 18 + 4}`, role: 'img', 'aria-label': 'timings' });
  let x = 0;
  phases.forEach((phase, index) => {
    const y = index * 18 + 2;
    const raw = Number(timings[`${phase}_ms`]);
    chart.append(svg('text', { x: 0, y: y + 12 }, phase));
    chart.append(svg('rect', { class: `t-${phase}`, x: 60 + x * scale, y, width: Math.max(values[index] * scale, values[index] > 0 ? 1 : 0), height: 14, 'data-phase': phase }));
    chart.append(svg('text', { x: 60 + width + 8, y: y + 12 }, raw < 0 || Number.isNaN(raw) ? 'not measured' : `${values[index].toFixed(1)} ms`));
    x += values[index];
  });
  return chart;
}

function cookieRows(detail) {
  const rows = [];
  for (const [name, value] of (detail.request && detail.request.headers) || []) {
    if (name.toLowerCase() !== 'cookie') continue;
    for (const pair of value.split(';')) {
      const at = pair.indexOf('=');
      if (pair.trim()) rows.push(['sent', pair.slice(0, at < 0 ? undefined : at).trim(), at < 0 ? '' : pair.slice(at + 1).trim(), '']);
    }
  }
  for (const [name, value] of (detail.response && detail.response.headers) || []) {
    if (name.toLowerCase() !== 'set-cookie') continue;
    const [first, ...attributes] = value.split(';');
    const at = first.indexOf('=');
    rows.push(['set', first.slice(0, at < 0 ? undefined : at).trim(), at < 0 ? '' : first.slice(at + 1).trim(), attributes.map((a) => a.trim()).join('; ')]);
  }
  if (!rows.length) return el('p', { class: 'muted' }, 'No cookies sent or set.');
  return el('div', { class: 'wide' }, el('table', { class: 'grid' },
    el('thead', {}, el('tr', {}, ...['', 'Name', 'Value', 'Attributes'].map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((cells) => el('tr', {}, ...cells.map((c) => el('td', {}, c)))))));
}

// WebSocket messages: text only, payloads never become markup.
function messageRow(message) {
  const arrow = message.direction === 'client' ? '\u2191 sent' : '\u2193 received';
  let data = message.encoding === 'base64' ? `[base64] ${message.text}` : message.text;
  if (message.code !== undefined) data = `${message.code} ${data}`.trim();
  if (data.length > 500) data = data.slice(0, 500) + '\u2026';
  const size = humanBytes(message.size) + (message.truncated ? ' (truncated)' : '');
  return el('tr', { class: `ws-${message.direction}` },
    el('td', {}, clockTime(message.at)), el('td', {}, arrow), el('td', {}, message.type),
    el('td', {}, size), el('td', { class: 'ws-data' }, data));
}

function websocketView(id, websocket) {
  const body = el('tbody', {}, ...websocket.messages.map(messageRow));
  const table = el('table', { class: 'grid messages', id: 'ws-messages' },
    el('thead', {}, el('tr', {}, ...['Time', 'Direction', 'Type', 'Size', 'Data'].map((h) => el('th', {}, h)))), body);
  const ended = websocket.closed_by || websocket.close_code !== null
    ? `Closed${websocket.closed_by ? ' by the ' + websocket.closed_by : ''}${websocket.close_code !== null ? ' with code ' + websocket.close_code : ''}.`
    : 'Open.';
  const parts = [el('h4', {}, `WebSocket messages (${websocket.message_count})`), el('p', { id: 'ws-state' }, ended), el('div', { class: 'wide' }, table)];
  if (websocket.message_count > websocket.messages.length) {
    const more = el('button', { type: 'button', class: 'more', onclick: async () => {
      try {
        const page = await rpc('request.messages', { id, offset: body.children.length, limit: 1000 });
        body.append(...page.items.map(messageRow));
        if (body.children.length >= page.total) more.remove();
      } catch (error) { reportError(error); }
    } }, 'Load more');
    parts.push(more);
  }
  return parts;
}

// A message captured live, for the WebSocket open in the detail.
function messageCaptured(message) {
  const pane = $('#detail');
  if (pane.hidden || pane.dataset.id !== message.transaction_id) return;
  const body = $('#ws-messages tbody');
  if (body) body.append(messageRow(message));
}

// -- the pane ------------------------------------------------------------------------------

function detailPane(detail, name) {
  const request = detail.request || { headers: [], body: {} };
  const response = detail.response;
  const pane = el('div', { class: 'tab-pane', id: `dpane-${name}` });
  if (name === 'headers') {
    const asText = (headers) => headers.map(([n, v]) => `${n}: ${v}`).join('\n');
    pane.append(el('h4', {}, 'Request ', copyButton(() => asText(request.headers || []))),
      el('p', { class: 'mono' }, `${request.method || detail.method} ${request.target || detail.url} ${request.http_version || ''}`),
      headerTable(request.headers || []));
    if (response) {
      pane.append(el('h4', {}, 'Response ', copyButton(() => asText(response.headers || []))),
        el('p', { class: 'mono' }, `${response.http_version || ''} ${response.status} ${response.reason || ''}`),
        headerTable(response.headers || []));
    } else pane.append(el('p', { class: 'error' }, `No response: ${detail.error || 'unknown'}`));
  } else if (name === 'body') {
    pane.append(bodyView(request, headerValue(request.headers, 'content-type'), 'Request body'));
    if (response) pane.append(bodyView(response, headerValue(response.headers, 'content-type') || detail.content_type || '', 'Response body'));
  } else if (name === 'timing') {
    pane.append(waterfall(detail.timings || {}), el('p', {}, `Total ${duration(detail.duration_ms) || 'not measured'}; started ${localTime(detail.started_at)}`));
  } else if (name === 'cookies') {
    pane.append(cookieRows(detail));
  } else if (name === 'messages') {
    if (detail.websocket) pane.append(...websocketView(detail.id, detail.websocket));
    else pane.append(el('p', { class: 'muted' }, 'No WebSocket messages: not a WebSocket exchange.'));
  }
  return pane;
}

function showDetailTab(name) {
  detailState.tab = name;
  for (const tab of document.querySelectorAll('#detail [data-dtab]')) tab.setAttribute('aria-selected', String(tab.dataset.dtab === name));
  const holder = $('#detail-body');
  if (holder && detailState.detail) holder.replaceChildren(detailPane(detailState.detail, name));
}

async function openDetail(id) {
  const detail = await rpc('request.get', { id });
  for (const url of detailState.blobUrls) URL.revokeObjectURL(url);
  detailState.blobUrls = [];
  detailState.detail = detail;
  table.selectedId = id;
  findSelected();
  scheduleRender();
  const pane = $('#detail');
  const status = detail.status === null ? `error: ${detail.error || 'unknown'}` : `${detail.status}${detail.response && detail.response.reason ? ' ' + detail.response.reason : ''}`;
  const tabs = el('div', { class: 'tabs', role: 'tablist' }, ...DETAIL_TABS.map((name) =>
    el('button', { type: 'button', role: 'tab', 'data-dtab': name, id: `dtab-${name}`, onclick: () => showDetailTab(name) }, name[0].toUpperCase() + name.slice(1))));
  pane.replaceChildren(
    el('div', { class: 'detail-head' },
      el('button', { type: 'button', class: 'close', 'aria-label': 'Close detail', onclick: closeDetail }, '×'),
      el('p', { class: 'request-line' }, `${detail.method} ${detail.url}`),
      el('p', { class: `status-line ${statusClass(detail)}` }, `${status} · ${duration(detail.duration_ms) || 'not measured'} · ${humanBytes(detail.response_bytes)}`)),
    requestTools(detail), el('div', { id: 'tool-output' }), tabs, el('div', { id: 'detail-body' }));
  pane.dataset.id = id;
  pane.hidden = false;
  $('#splitter').hidden = false;
  $('#split').classList.add('open');
  // A WebSocket opens on its messages; other exchanges on the tab last chosen.
  const remembered = detailState.tab === 'messages' ? 'headers' : detailState.tab;
  showDetailTab(detail.websocket ? 'messages' : remembered);
  fitSplit();
  if (window.matchMedia('(max-width: 999px)').matches) pane.scrollIntoView({ block: 'nearest' });
}

// -- actions -------------------------------------------------------------------------------

function toolOutput(...nodes) { $('#tool-output').replaceChildren(...nodes); }

function requestTools(detail) {
  const marked = table.compareWith;
  const remove = el('button', { type: 'button', id: 'delete-request' }, 'Delete');
  remove.addEventListener('click', () => deleteRequest(detail, remove));
  return el('div', { class: 'request-tools' },
    el('button', { type: 'button', id: 'replay-button', onclick: () => replay(detail.id, {}) }, 'Replay'),
    el('button', { type: 'button', id: 'edit-replay', onclick: () => editForm(detail) }, 'Edit and replay'),
    el('span', { class: 'group' }, 'Copy as',
      ...['curl', 'httpie', 'python', 'fetch'].map((format) =>
        el('button', { type: 'button', id: `copy-${format}`, onclick: () => copyAs(detail.id, format) }, format))),
    el('button', { type: 'button', id: 'compare-mark', onclick: () => { table.compareWith = detail.id; showMessage('Marked for comparison: open another request and press Compare'); } }, 'Mark for compare'),
    marked && marked !== detail.id ? el('button', { type: 'button', id: 'compare-button', onclick: () => compare(marked, detail.id) }, 'Compare with marked') : null,
    el('button', { type: 'button', id: 'collect-button', onclick: () => collectForm(detail) }, 'Add to collection'),
    remove);
}

async function copyAs(id, format) {
  try {
    const code = await rpc('request.export', { id, format });
    toolOutput(el('pre', { id: 'export-output', 'data-format': format }, code));
    if (navigator.clipboard) await navigator.clipboard.writeText(code).catch(() => null);
    showMessage(`${format} code copied`);
  } catch (error) { reportError(error); }
}

async function replay(id, overrides) {
  try {
    const result = await rpc('request.replay', Object.assign({ id }, overrides));
    const where = state.current && result.session_id === state.current.id ? 'this session'
      : `the session "${(state.sessions.get(result.session_id) || { name: result.session_id }).name}"`;
    showMessage(`Replayed: ${result.status === null ? result.error : result.status}, recorded as a new request in ${where}`);
    await openDetail(result.id);
  } catch (error) { reportError(error); }
}

function editForm(detail) {
  const request = detail.request || { headers: [], body: {} };
  const body = request.body || {};
  const binary = body.encoding === 'base64';
  const method = el('input', { id: 'edit-method', value: detail.method, 'aria-label': 'Method', size: 8 });
  const url = el('input', { id: 'edit-url', value: detail.url, 'aria-label': 'URL' });
  const headers = el('textarea', { id: 'edit-headers', rows: 6, 'aria-label': 'Headers, one per line' });
  headers.value = (request.headers || []).map(([n, v]) => `${n}: ${v}`).join('\n');
  const text = el('textarea', { id: 'edit-body', rows: 6, 'aria-label': 'Body' });
  text.value = binary ? '' : (body.text || '');
  const form = el('form', { class: 'edit-form', id: 'edit-form' },
    el('label', {}, 'Method ', method), el('label', {}, 'URL ', url),
    el('label', {}, 'Headers (Name: value per line)', headers),
    el('label', {}, binary ? 'Body (binary: leave empty to send the captured bytes)' : 'Body', text),
    el('div', {}, el('button', { type: 'submit', id: 'edit-send' }, 'Send'), ' ',
      el('button', { type: 'button', onclick: () => toolOutput() }, 'Cancel')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const pairs = headers.value.split('\n').filter((line) => line.includes(':'))
      .map((line) => { const at = line.indexOf(':'); return [line.slice(0, at).trim(), line.slice(at + 1).trim()]; });
    const overrides = { method: method.value.trim(), url: url.value.trim(), headers: pairs };
    if (!binary || text.value) overrides.body = text.value;
    replay(detail.id, overrides);
  });
  toolOutput(form);
  method.focus();
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
    toolOutput(el('h4', {}, 'Compared with the marked request'), el('pre', { id: 'compare-result' }, diffLines(diff).join('\n')));
  } catch (error) { reportError(error); }
}

// One collection per name: an existing one of that name is reused.
async function collectionNamed(name) {
  const existing = (await rpc('collection.list', {})).items.find((c) => c.name === name);
  return existing || rpc('collection.create', { name });
}

async function collectForm(detail) {
  const input = el('input', { id: 'collection-name', list: 'collection-names', value: (state.current && state.current.name) || 'postcap', 'aria-label': 'Collection name' });
  const names = el('datalist', { id: 'collection-names' });
  const form = el('form', { class: 'inline', id: 'collect-form' }, 'Collection ', input, names, el('button', { type: 'submit', id: 'collect-send' }, 'Add'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const collection = await collectionNamed(input.value.trim() || 'postcap');
      await rpc('collection.add', { id: collection.id, request_ids: [detail.id] });
      showMessage(`Added to the collection "${collection.name}"`);
      toolOutput();
    } catch (error) { reportError(error); }
  });
  toolOutput(form);
  try {
    const listed = await rpc('collection.list', {});
    names.replaceChildren(...listed.items.map((c) => el('option', { value: c.name })));
  } catch (error) { reportError(error); }
}

async function deleteRequest(detail, button) {
  if (button.dataset.confirm !== 'yes') { button.dataset.confirm = 'yes'; button.textContent = 'Confirm delete'; return; }
  try {
    await rpc('request.delete', { ids: [detail.id] });
    closeDetail();
    table.selectedId = null;
    await loadRequests(true);
  } catch (error) { reportError(error); }
}
