// The encrypted link to the postcap server (see postcap/interceptor/crypto.py):
// AES-256-GCM under a key derived with PBKDF2-SHA256 from the default or a custom key.
export const HOST_NAME = "com.postcap.bridge";
export const DEFAULT_KEY = "postcapInterceptorDefaultKey";
const SALT = "postcap-interceptor-v1";
const ITERATIONS = 100000;
const TO_SERVER = "postcap-interceptor-v1 extension-to-server";
const TO_EXTENSION = "postcap-interceptor-v1 server-to-extension";
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function isValidCustomKey(key) {
  return typeof key === "string" && /^[A-Za-z0-9]{10,}$/.test(key);
}

export async function deriveKey(passphrase) {
  const material = await crypto.subtle.importKey(
    "raw", encoder.encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt: encoder.encode(SALT), iterations: ITERATIONS },
    material, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
}

export function toBase64(bytes) {
  let text = "";
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, view.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// This extension's link: a random id for this run and a counter inside every sealed
// frame, so the server accepts each frame once (see ReplayGuard in crypto.py).
const LINK = toBase64(crypto.getRandomValues(new Uint8Array(12)));
let sequence = 0;

export async function seal(key, message) {
  const stamped = { ...message, link: LINK, seq: ++sequence };
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: encoder.encode(TO_SERVER) },
    key, encoder.encode(JSON.stringify(stamped)));
  return { type: "sealed", v: 1, iv: toBase64(iv), ct: toBase64(ct) };
}

// The server's links: each counter once, none older than the last WINDOW of its link.
const WINDOW = 256;
const MAX_LINKS = 16;
const serverLinks = new Map();  // link id -> { highest, seen: Set of counters in the window }

export function acceptCounter(message) {
  const { link, seq } = message;
  if (typeof link !== "string" || link.length < 8 || link.length > 64 ||
      !Number.isSafeInteger(seq) || seq < 1) {
    throw new Error("frame from the server has no link id or counter");
  }
  const state = serverLinks.get(link);
  if (state === undefined) {
    serverLinks.set(link, { highest: seq, seen: new Set([seq]) });
    if (serverLinks.size > MAX_LINKS) serverLinks.delete(serverLinks.keys().next().value);
    return;
  }
  if (seq <= state.highest - WINDOW) throw new Error(`frame ${seq} is too old`);
  if (state.seen.has(seq)) throw new Error(`frame ${seq} was already received (replayed)`);
  state.seen.add(seq);
  if (seq > state.highest) {
    state.highest = seq;
    for (const old of state.seen) if (old <= seq - WINDOW) state.seen.delete(old);
  }
  serverLinks.delete(link);  // most recently used last
  serverLinks.set(link, state);
}

// The message inside a sealed frame from the server; throws when it fails authentication
// or repeats (or is older than the window of) a frame already received.
export async function open(key, frame) {
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: fromBase64(frame.iv), additionalData: encoder.encode(TO_EXTENSION) },
    key, fromBase64(frame.ct));
  const message = JSON.parse(decoder.decode(plain));
  acceptCounter(message);
  return message;
}
