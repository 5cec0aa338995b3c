// The review page: the pending items of GET /v1/review, one item with its stored inputs
// (fetched with the API key, shown from blob: URLs) and a label sent to POST /v1/feedback.
// Server data is only ever written with textContent, never as HTML.
"use strict";

const KEY_STORE = "polyfuse.apiKey";
const REVIEWER_STORE = "polyfuse.reviewer";
const PAGE = 50;
const $ = (id) => document.getElementById(id);
const state = { labels: [], multilabel: false, offset: 0, current: null, urls: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function headers(extra) {
  const key = $("api-key").value.trim();
  return { ...(key ? { "X-API-Key": key } : {}), ...(extra || {}) };
}

async function call(path, options) {
  const response = await fetch(path, { ...(options || {}), headers: headers((options || {}).headers) });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    const err = (body && body.error) || {};
    showError(err.code || String(response.status), err.message || `the server answered ${response.status}`, err.hint);
    if (response.status === 401 || response.status === 403) $("api-key").closest("details").open = true;
    return null;
  }
  $("error").hidden = true;
  return body;
}

function showError(code, message, hint) {
  $("error-code").textContent = code;
  $("error-message").textContent = message;
  $("error-hint").textContent = hint ? `hint: ${hint}` : "";
  $("error").hidden = false;
}

const answer = (value) => (Array.isArray(value) ? value.join(", ") || "(no label)" : value === null ? "(no answer: blocked)" : String(value));

async function loadInfo() {
  const info = await call("/v1/info");
  if (!info) { $("model").textContent = "model information unavailable"; return false; }
  state.labels = (info.labels || []).map(String);
  state.multilabel = info.task === "multilabel";
  $("model").textContent = `model ${info.name}${info.version ? ` · version ${info.version}` : ""}`;
  return true;
}

async function loadQueue(append) {
  state.offset = append ? state.offset : 0;
  const reason = $("reason").value;
  const query = new URLSearchParams({ offset: String(state.offset), limit: String(PAGE) });
  if (reason) query.set("reason", reason);
  const page = await call(`/v1/review?${query}`);
  if (!page) return;
  const body = $("items");
  if (!append) body.replaceChildren();
  for (const item of page.items) body.append(row(item));
  state.offset = page.offset + page.items.length;
  $("count").textContent = `${page.total} pending`;
  $("empty").hidden = page.total > 0;
  $("more").hidden = page.next_offset === null;
}

function row(item) {
  const open = el("button", { type: "button", class: "link" }, item.request_id);
  open.addEventListener("click", () => show(item));
  const when = new Date(item.created * 1000).toLocaleString();
  const confidence = item.confidence === null ? "" : `${(item.confidence * 100).toFixed(1)}%`;
  return el("tr", { "data-request-id": item.request_id },
    el("td", {}, open), el("td", {}, when),
    el("td", {}, item.reasons.map((r) => r.replaceAll("_", " ")).join(", ")),
    el("td", {}, answer(item.prediction)), el("td", {}, confidence));
}

async function inputView(requestId, modality, stored) {
  const box = el("fieldset", { class: "field", "data-modality": modality }, el("legend", {}, modality));
  if (!stored.url) {
    box.append(el("p", { class: "muted" }, `not kept (sha256 ${stored.sha256.slice(0, 12)}…, ${stored.size} bytes)`));
    return box;
  }
  const response = await fetch(stored.url, { headers: headers() });
  if (!response.ok) { box.append(el("p", { class: "muted" }, `could not load it (${response.status})`)); return box; }
  const blob = await response.blob();
  if (stored.format === "text") {
    box.append(el("pre", { class: "text-input" }, await blob.text()));
  } else {
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    const kind = blob.type.split("/")[0];
    if (kind === "image") box.append(el("img", { class: "preview", src: url, alt: `${modality} as the firewall left it` }));
    else if (kind === "audio") box.append(el("audio", { controls: "", src: url, "aria-label": `${modality} input` }));
    else box.append(el("a", { href: url, download: `${modality}` }, `download (${stored.format || "file"})`));
  }
  return box;
}

function choices(item) {
  const box = $("choices");
  box.replaceChildren();
  const type = state.multilabel ? "checkbox" : "radio";
  const given = item.label ?? item.prediction;
  state.labels.forEach((label, i) => {
    const id = `choice-${i}`;
    const input = el("input", { type, id, name: "label", value: label });
    input.checked = Array.isArray(given) ? given.map(String).includes(label) : String(given) === label;
    box.append(el("label", { for: id, class: "choice" }, input, ` ${label}`));
  });
}

async function show(item) {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  state.current = item;
  $("item-id").textContent = item.request_id;
  const findings = item.findings.length ? ` · firewall ${item.firewall}: ${item.findings.join(", ")}` : "";
  const against = item.contradicting.length ? ` · contradicted without: ${item.contradicting.join(", ")}` : "";
  const shadow = item.shadow ? ` · shadow ${item.shadow.version} answered ${answer(item.shadow.prediction)}` : "";
  $("item-meta").textContent = `reasons: ${item.reasons.join(", ")}${findings}${against}${shadow}`;
  $("item-answer").textContent = answer(item.prediction);
  const bars = $("item-probabilities");
  bars.replaceChildren();
  for (const [name, p] of Object.entries(item.probabilities).sort((a, b) => b[1] - a[1])) {
    const fill = el("span", { class: "fill" });
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bars.append(el("div", { class: "bar", "data-name": name }, el("span", { class: "name" }, name),
      el("span", { class: "track" }, fill), el("span", { class: "value" }, `${(p * 100).toFixed(1)}%`)));
  }
  choices(item);
  $("done").textContent = "";
  $("item").hidden = false;
  const views = await Promise.all(Object.entries(item.inputs).map(([m, s]) => inputView(item.request_id, m, s)));
  $("item-inputs").replaceChildren(...views);
}

async function submit(event) {
  event.preventDefault();
  const item = state.current;
  if (!item) return;
  const picked = [...document.querySelectorAll('#choices input:checked')].map((x) => x.value);
  if (!state.multilabel && picked.length !== 1) { showError("invalid_input", "pick one label"); return; }
  const body = { request_id: item.request_id, label: state.multilabel ? picked : picked[0] };
  const reviewer = $("reviewer").value.trim();
  if (reviewer) { body.reviewer = reviewer; sessionStorage.setItem(REVIEWER_STORE, reviewer); }
  $("submit").disabled = true;
  try {
    const answerBody = await call("/v1/feedback", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!answerBody) return;
    $("done").textContent = `saved: the model's answer was ${answerBody.outcome}`;
    const tr = document.querySelector(`tr[data-request-id="${CSS.escape(item.request_id)}"]`);
    if (tr) tr.remove();
    await loadQueue(false);
  } finally {
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  $("reviewer").value = sessionStorage.getItem(REVIEWER_STORE) || "";
  key.addEventListener("change", async () => {
    if (key.value.trim()) sessionStorage.setItem(KEY_STORE, key.value.trim());
    else sessionStorage.removeItem(KEY_STORE);
    if (await loadInfo()) await loadQueue(false);
  });
  $("reason").addEventListener("change", () => loadQueue(false));
  $("refresh").addEventListener("click", () => loadQueue(false));
  $("more").addEventListener("click", () => loadQueue(true));
  $("label-form").addEventListener("submit", submit);
  if (await loadInfo()) await loadQueue(false);
});
