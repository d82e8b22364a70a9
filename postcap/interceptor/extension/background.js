// postcap Interceptor service worker: records webRequest exchanges and cookie changes
// and sends them, sealed, through the native-messaging bridge to the postcap server.
import { HOST_NAME, DEFAULT_KEY, deriveKey, seal, open, toBase64, isValidCustomKey } from "./link.js";

const MAX_BODY = 256 * 1024;      // request bodies beyond this are truncated (frames stay < 960 KiB)
const MAX_PENDING = 2000;         // exchanges in flight we keep track of
const PING_MS = 15000;
const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];

const state = {
  connected: false,      // the bridge answered
  secure: false,         // the server's last sealed reply authenticated under our key
  capture: true,
  customKey: false,
  lastError: null,
  filters: null,         // {url_contains, url_excludes, methods} of the server's session
  sessionActive: false,
  sent: 0,
};
const pending = new Map();
let port = null;
let sealingKey = null;
let reconnects = 0;
let ready = null;

async function loadSettings() {
  const stored = await chrome.storage.local.get(["capture", "key"]);
  state.capture = stored.capture !== false;
  state.customKey = isValidCustomKey(stored.key);
  sealingKey = await deriveKey(state.customKey ? stored.key : DEFAULT_KEY);
}

function connect() {
  port = chrome.runtime.connectNative(HOST_NAME);
  port.onMessage.addListener(onHostMessage);
  port.onDisconnect.addListener(() => {
    state.connected = false;
    state.secure = false;
    state.lastError = chrome.runtime.lastError ? chrome.runtime.lastError.message : "bridge disconnected";
    port = null;
    const delay = RECONNECT_MS[Math.min(reconnects++, RECONNECT_MS.length - 1)];
    setTimeout(connect, delay);
  });
  send({ type: "hello", extension_version: chrome.runtime.getManifest().version,
         user_agent: navigator.userAgent });
}

async function onHostMessage(message) {
  state.connected = true;
  reconnects = 0;
  if (message.type === "sealed") {
    try {
      const inner = await open(sealingKey, message);
      state.secure = true;
      state.lastError = null;
      if (inner.type === "config") {
        state.filters = inner.filters;
        state.sessionActive = inner.session_active;
      }
    } catch (e) {
      if (e instanceof DOMException) {
        state.secure = false;
        state.lastError = "a reply from the server failed authentication: the keys differ";
      } else {
        state.lastError = `refused a frame from the bridge: ${e.message}`;  // replayed or old
      }
    }
  } else if (message.type === "error") {
    if (message.code === "authentication_failed") state.secure = false;
    state.lastError = `${message.code}: ${message.message}`;
  }
}

async function send(message) {
  await ready;
  if (port === null) return;
  const frame = await seal(sealingKey, message);
  if (port !== null) {
    port.postMessage(frame);
    state.sent++;
  }
}

// -- which exchanges to record ---------------------------------------------------------

function matches(pattern, url) {
  if (url.includes(pattern)) return true;
  try { return new RegExp(pattern).test(url); } catch (e) { return true; } // the server decides
}

function wanted(method, url) {
  if (!state.capture || !/^https?:/.test(url)) return false;
  const f = state.filters;
  if (!f) return true;
  if (f.methods && f.methods.length && !f.methods.includes(method)) return false;
  if (f.url_contains && !matches(f.url_contains, url)) return false;
  return true;
}

function headerList(headers) {
  return (headers || []).map((h) => [h.name,
    h.value !== undefined ? h.value : String.fromCharCode(...(h.binaryValue || []))]);
}

function requestBody(details) {
  const body = details.requestBody;
  if (!body) return null;
  if (body.formData) return { form: body.formData };
  const parts = [];
  let size = 0;
  let truncated = false;
  for (const part of body.raw || []) {
    if (part.bytes) {
      const bytes = new Uint8Array(part.bytes);
      size += bytes.length;
      parts.push(bytes);
    } else {
      truncated = true;   // a file: the browser does not expose its bytes
    }
  }
  const joined = new Uint8Array(Math.min(size, MAX_BODY));
  let offset = 0;
  for (const bytes of parts) {
    const piece = bytes.subarray(0, joined.length - offset);
    joined.set(piece, offset);
    offset += piece.length;
  }
  return { base64: toBase64(joined), size, truncated: truncated || size > MAX_BODY };
}

function finish(details, extra) {
  const record = pending.get(details.requestId);
  if (!record) return;
  pending.delete(details.requestId);
  Object.assign(record, extra, { ended: details.timeStamp });
  send({ type: "request", record });
}

chrome.webRequest.onBeforeRequest.addListener((details) => {
  if (details.initiator && details.initiator.startsWith("chrome-extension://")) return;
  if (!wanted(details.method, details.url)) return;
  if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value);
  pending.set(details.requestId, {
    method: details.method, url: details.url, type: details.type, tab_id: details.tabId,
    initiator: details.initiator || null, started: details.timeStamp,
    body: requestBody(details), request_headers: [],
  });
}, { urls: ["<all_urls>"] }, ["requestBody"]);

chrome.webRequest.onSendHeaders.addListener((details) => {
  const record = pending.get(details.requestId);
  if (!record) return;
  record.request_headers = headerList(details.requestHeaders);
  record.sent = details.timeStamp;
}, { urls: ["<all_urls>"] }, ["requestHeaders", "extraHeaders"]);

chrome.webRequest.onHeadersReceived.addListener((details) => {
  const record = pending.get(details.requestId);
  if (!record) return;
  record.status = details.statusCode;
  record.status_line = details.statusLine;
  record.response_headers = headerList(details.responseHeaders);
  record.headers_received = details.timeStamp;
}, { urls: ["<all_urls>"] }, ["responseHeaders", "extraHeaders"]);

chrome.webRequest.onBeforeRedirect.addListener((details) => {
  finish(details, { ip: details.ip || null, from_cache: details.fromCache,
                    redirect_url: details.redirectUrl });
}, { urls: ["<all_urls>"] }, ["responseHeaders", "extraHeaders"]);

chrome.webRequest.onCompleted.addListener((details) => {
  finish(details, { ip: details.ip || null, from_cache: details.fromCache,
                    status: details.statusCode, status_line: details.statusLine });
}, { urls: ["<all_urls>"] });

chrome.webRequest.onErrorOccurred.addListener((details) => {
  finish(details, { ip: details.ip || null, from_cache: details.fromCache, error: details.error });
}, { urls: ["<all_urls>"] });

chrome.cookies.onChanged.addListener((change) => {
  if (!state.capture) return;
  send({ type: "cookie", removed: change.removed, cause: change.cause, cookie: change.cookie });
});

// -- the popup ----------------------------------------------------------------------------

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (sender.id !== chrome.runtime.id) return false;
  if (message.type === "state") {
    reply({ ...state, extensionId: chrome.runtime.id });
  } else if (message.type === "setCapture") {
    state.capture = Boolean(message.value);
    chrome.storage.local.set({ capture: state.capture }).then(() => reply({ ok: true }));
    return true;
  } else if (message.type === "setKey") {
    const key = message.key || "";
    if (key !== "" && !isValidCustomKey(key)) {
      reply({ ok: false, error: "the key must be alphanumeric and at least 10 characters" });
      return false;
    }
    const stored = key === "" ? chrome.storage.local.remove("key") : chrome.storage.local.set({ key });
    stored.then(() => { ready = loadSettings(); return ready; })
      .then(() => send({ type: "hello", extension_version: chrome.runtime.getManifest().version,
                         user_agent: navigator.userAgent }))
      .then(() => reply({ ok: true }));
    return true;
  }
  return false;
});

ready = loadSettings();
ready.then(connect);
setInterval(() => send({ type: "ping" }), PING_MS);
