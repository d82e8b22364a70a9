// The Cookies tab: one row per distinct cookie (name, domain, path) with its latest
// value and how often it was seen, the jar, and the sync list of domains.
'use strict';

const COOKIE_PAGES = 20;   // at most 20,000 captured cookies are read

const cookieState = { distinct: new Map() };   // "name\0domain\0path" -> {latest, seen, sources}

function cookieKey(cookie) { return `${cookie.name}\u0000${cookie.domain}\u0000${cookie.path}`; }

function countCookie(cookie) {
  const key = cookieKey(cookie);
  const known = cookieState.distinct.get(key) || { latest: cookie, seen: 0, sources: new Set() };
  known.latest = cookie;
  known.seen += 1;
  known.sources.add(cookie.source);
  cookieState.distinct.set(key, known);
}

function renderCookies() {
  const rows = [...cookieState.distinct.values()].sort((a, b) =>
    (a.latest.domain + a.latest.name < b.latest.domain + b.latest.name ? -1 : 1));
  $('#cookies-table tbody').replaceChildren(...rows.map(cookieRow));
  $('#cookies-summary').textContent = `${rows.length} distinct`;
}

function cookieRow(entry) {
  const cookie = entry.latest;
  const add = el('button', { type: 'button', class: 'add-to-jar', onclick: async () => {
    try {
      await rpc('cookiejar.add', { cookie_ids: [cookie.id] });
      add.textContent = 'Added';
      add.disabled = true;
      await loadJar();
    } catch (error) { reportError(error); }
  } }, 'Add to jar');
  return el('tr', { 'data-id': cookie.id },
    el('td', {}, cookie.name), el('td', {}, cookie.domain), el('td', {}, cookie.path),
    el('td', { class: 'value', title: cookie.value }, cookie.value), el('td', {}, entry.seen),
    el('td', {}, [...entry.sources].join(', ')), el('td', {}, add));
}

function cookieArrived(cookie) {
  if (!state.current || cookie.session_id !== state.current.id) return;
  countCookie(cookie);
  if (state.tab === 'cookies') renderCookies();
}

async function loadJar() {
  const jar = $('#jar-table tbody');
  try {
    const result = await rpc('cookiejar.list', {});
    jar.replaceChildren(...result.items.map((c) => el('tr', {}, el('td', {}, c.domain), el('td', {}, c.path), el('td', {}, c.name), el('td', { class: 'value' }, c.value), el('td', {}, c.expires || 'session'))));
  } catch (error) { jar.replaceChildren(el('tr', {}, el('td', { colspan: 5 }, error.message))); }
}

async function loadSync() {
  try {
    const sync = await rpc('cookiesync.get', {});
    $('#sync-enabled').checked = sync.enabled;
    $('#sync-domains').value = sync.domains.join(', ');
    $('#sync-state').textContent = '';
  } catch (error) { $('#sync-state').textContent = error.message; }
}

async function saveSync(event) {
  event.preventDefault();
  const domains = $('#sync-domains').value.split(/[\s,]+/).filter(Boolean);
  try {
    const sync = await rpc('cookiesync.set', { enabled: $('#sync-enabled').checked, domains });
    $('#sync-state').textContent = sync.enabled ? `syncing ${sync.domains.length} domain(s)` : 'off';
  } catch (error) { $('#sync-state').textContent = error.message; }
}

async function loadCookies() {
  if (!state.current) return;
  cookieState.distinct = new Map();
  try {
    for (let page = 0; page < COOKIE_PAGES; page += 1) {
      const result = await rpc('cookie.list', { session_id: state.current.id, limit: 1000, offset: page * 1000 });
      for (const cookie of result.items) countCookie(cookie);
      if (result.items.length < 1000) break;
    }
    renderCookies();
  } catch (error) { $('#cookies-table tbody').replaceChildren(el('tr', {}, el('td', { colspan: 7 }, error.message))); }
  await Promise.all([loadJar(), loadSync()]);
}

function initCookies() {
  $('#sync-form').addEventListener('submit', saveSync);
}
