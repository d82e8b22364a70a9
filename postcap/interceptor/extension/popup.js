// The popup: connected/secure state, the capture toggle and the key field.
import { isValidCustomKey } from "./link.js";

const $ = (id) => document.getElementById(id);

function show(element, good, text) {
  element.textContent = text;
  element.className = good ? "ok" : "bad";
}

async function refresh() {
  const state = await chrome.runtime.sendMessage({ type: "state" });
  show($("connected"), state.connected, state.connected ? "connected" : "not connected");
  show($("secure"), state.secure, state.secure
    ? (state.customKey ? "secure (custom key)" : "secure (default key)")
    : "not secure");
  $("capture").checked = state.capture;
  $("extension-id").textContent = state.extensionId;
  $("error").textContent = state.lastError || "";
}

$("capture").addEventListener("change", async () => {
  await chrome.runtime.sendMessage({ type: "setCapture", value: $("capture").checked });
  refresh();
});

$("save").addEventListener("click", async () => {
  const key = $("key").value;
  if (key !== "" && !isValidCustomKey(key)) {
    $("error").textContent = "The key must be alphanumeric and at least 10 characters.";
    return;
  }
  const answer = await chrome.runtime.sendMessage({ type: "setKey", key });
  $("error").textContent = answer.ok ? "Key saved." : answer.error;
  $("key").value = "";
  document.body.dataset.saved = answer.ok ? "yes" : "no";
});

document.body.dataset.ready = "yes";  // listeners are in place
refresh();
setInterval(refresh, 1000);
