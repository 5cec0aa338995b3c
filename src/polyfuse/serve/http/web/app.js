// The polyfuse web page: one input per modality of the served model, POST /v1/predict,
// and the answer (label, probabilities, contributions, degradation, firewall findings).
// No framework and no network beyond this server. Server data is only ever written
// with textContent, never as HTML.
"use strict";

const KEY_STORE = "polyfuse.apiKey";
const WAV_RATE = 16000; // recordings are resampled to 16 kHz mono 16-bit PCM

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

// ------------------------------------------------------------------ model info
const inputs = new Map(); // modality -> { value(): File | Blob | string | null, clear() }
const players = new Map(); // video modality -> its <video> preview

async function loadInfo() {
  $("model").textContent = "loading model information…";
  let info;
  try {
    const response = await fetch("/v1/info", { headers: headers() });
    const body = await readJson(response);
    if (!response.ok) {
      showError(body, response);
      $("model").textContent = "model information unavailable (see the error below)";
      if (response.status === 401 || response.status === 403) {
        $("api-key").closest("details").open = true;
        $("api-key").focus();
      }
      return;
    }
    info = body;
  } catch (err) {
    showError(null, null, String(err));
    return;
  }
  hideError();
  const version = info.version ? ` · version ${info.version}` : "";
  const task = info.task ? ` · ${info.task}` : "";
  $("model").textContent = `model ${info.name}${version}${task}`;
  buildInputs(info.modalities || []);
}

function buildInputs(modalities) {
  // Keep what the user already gave when the model's modalities are the same.
  if (modalities.join("\n") === [...inputs.keys()].join("\n")) return;
  const box = $("inputs");
  box.replaceChildren();
  inputs.clear();
  players.clear();
  for (const name of modalities) {
    const kind = kindOf(name);
    const field =
      kind === "image" ? imageInput(name) :
      kind === "audio" ? audioInput(name) :
      kind === "video" ? videoInput(name) :
      kind === "text" ? textInput(name) : fileInput(name);
    box.append(field);
  }
}

function kindOf(name) {
  const n = name.toLowerCase();
  if (n.startsWith("image") || n === "photo" || n === "picture") return "image";
  if (n.startsWith("audio") || n === "speech" || n === "sound") return "audio";
  if (n.startsWith("text") || n === "caption") return "text";
  if (n.startsWith("video") || n === "clip" || n === "movie") return "video";
  return "file";
}

function fieldset(name, kind, ...children) {
  return el("fieldset", { class: `field ${kind}`, "data-modality": name },
    el("legend", {}, name), ...children);
}

function textInput(name) {
  const id = `in-${name}`;
  const area = el("textarea", { id, name, rows: "4", placeholder: "type some text" });
  inputs.set(name, {
    value: () => (area.value.trim() ? area.value : null),
    clear: () => { area.value = ""; },
  });
  return fieldset(name, "text", el("label", { for: id, class: "sr-only" }, `${name} text`), area);
}

function fileInput(name, accept) {
  const id = `in-${name}`;
  const input = el("input", { id, name, type: "file" });
  if (accept) input.setAttribute("accept", accept);
  inputs.set(name, {
    value: () => input.files[0] || null,
    clear: () => { input.value = ""; },
  });
  return fieldset(name, "file", el("label", { for: id }, `${name} file`), input);
}

function imageInput(name) {
  const id = `in-${name}`;
  const input = el("input", { id, name, type: "file", accept: "image/*" });
  const preview = el("img", { class: "preview", alt: `${name} preview`, hidden: "" });
  input.addEventListener("change", () => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    const file = input.files[0];
    preview.hidden = !file;
    if (file) preview.src = URL.createObjectURL(file);
    else preview.removeAttribute("src");
  });
  inputs.set(name, {
    value: () => input.files[0] || null,
    clear: () => { input.value = ""; input.dispatchEvent(new Event("change")); },
  });
  return fieldset(name, "image", el("label", { for: id }, `${name} file`), input, preview);
}

function videoInput(name) {
  const id = `in-${name}`;
  const input = el("input", { id, name, type: "file", accept: "video/*,.mp4,.mov,.webm,.mkv,.avi" });
  const player = el("video", { controls: "", hidden: "", class: "preview", "aria-label": `${name} preview` });
  input.addEventListener("change", () => {
    if (player.src) URL.revokeObjectURL(player.src);
    const file = input.files[0];
    player.hidden = !file;
    if (file) player.src = URL.createObjectURL(file);
    else player.removeAttribute("src");
  });
  inputs.set(name, {
    value: () => input.files[0] || null,
    clear: () => { input.value = ""; input.dispatchEvent(new Event("change")); },
  });
  players.set(name, player);
  return fieldset(name, "video", el("label", { for: id }, `${name} file`), input, player);
}

function audioInput(name) {
  const id = `in-${name}`;
  const input = el("input", { id, name, type: "file", accept: "audio/*,.wav,.flac,.ogg" });
  const record = el("button", { type: "button", class: "record", "aria-pressed": "false" }, "Record");
  const status = el("span", { class: "muted", "aria-live": "polite" });
  const player = el("audio", { controls: "", hidden: "", "aria-label": `${name} preview` });
  let recorded = null; // a WAV Blob; a chosen file replaces it
  let recorder = null;

  const show = (blob) => {
    if (player.src) URL.revokeObjectURL(player.src);
    player.hidden = !blob;
    if (blob) player.src = URL.createObjectURL(blob);
    else player.removeAttribute("src");
  };
  input.addEventListener("change", () => {
    recorded = null;
    status.textContent = "";
    show(input.files[0] || null);
  });

  if (!(navigator.mediaDevices && window.MediaRecorder)) {
    record.disabled = true;
    record.title = "recording needs a secure page (HTTPS or localhost) and a microphone";
  }
  record.addEventListener("click", async () => {
    if (recorder) { recorder.stop(); return; }
    try {
      recorder = await startRecording(async (blob) => {
        recorder = null;
        record.textContent = "Record";
        record.setAttribute("aria-pressed", "false");
        status.textContent = "converting…";
        try {
          recorded = await toWav(blob);
          input.value = "";
          show(recorded);
          status.textContent = `recorded ${(recorded.size / 1024).toFixed(0)} KiB WAV`;
        } catch (err) {
          status.textContent = `could not convert the recording: ${err}`;
        }
      });
      record.textContent = "Stop";
      record.setAttribute("aria-pressed", "true");
      status.textContent = "recording…";
    } catch (err) {
      recorder = null;
      status.textContent = `cannot record: ${err.message || err}`;
    }
  });

  inputs.set(name, {
    value: () => input.files[0] || (recorded && new File([recorded], "recording.wav", { type: "audio/wav" })) || null,
    clear: () => { input.value = ""; recorded = null; status.textContent = ""; show(null); },
  });
  return fieldset(name, "audio",
    el("label", { for: id }, `${name} file`), input,
    el("div", { class: "row" }, record, status), player);
}

// ------------------------------------------------------------------ recording -> WAV
async function startRecording(onDone) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
  recorder.addEventListener("stop", () => {
    for (const track of stream.getTracks()) track.stop();
    onDone(new Blob(chunks, { type: recorder.mimeType }));
  });
  recorder.start();
  return recorder;
}

// The server reads WAV/FLAC/OGG (libsndfile), not the browser's webm/opus: decode the
// recording, mix down to mono at WAV_RATE and write 16-bit PCM WAV.
async function toWav(blob) {
  const context = new AudioContext();
  let decoded;
  try {
    decoded = await context.decodeAudioData(await blob.arrayBuffer());
  } finally {
    context.close();
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * WAV_RATE));
  const offline = new OfflineAudioContext(1, frames, WAV_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return new Blob([encodeWav(rendered.getChannelData(0), WAV_RATE)], { type: "audio/wav" });
}

function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return buffer;
}

// ------------------------------------------------------------------ predict
async function predict(event) {
  event.preventDefault();
  const form = new FormData();
  for (const [name, input] of inputs) {
    const value = input.value();
    if (value === null) continue;
    if (typeof value === "string") form.append(name, value);
    else form.append(name, value, value.name || name);
  }
  hideError();
  if ([...form.keys()].length === 0) {
    showError(null, null, "give at least one input");
    return;
  }
  $("predict").disabled = true;
  $("busy").hidden = false;
  try {
    // with a video, also ask which of its frames mattered
    const video = [...players.keys()].some((name) => form.has(name));
    const url = video ? "/v1/predict?explain=frames" : "/v1/predict";
    const response = await fetch(url, { method: "POST", headers: headers(), body: form });
    const body = await readJson(response);
    if (response.ok && body) showResult(body);
    else showError(body, response);
  } catch (err) {
    showError(null, null, `the request failed: ${err}`);
  } finally {
    $("predict").disabled = false;
    $("busy").hidden = true;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function bars(target, values, { highlight } = {}) {
  const box = $(target);
  box.replaceChildren();
  const entries = Object.entries(values || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    box.append(el("p", { class: "muted" }, "not reported by this model"));
    return;
  }
  for (const [name, value] of entries) {
    const share = Math.max(0, Math.min(1, Number(value)));
    const fill = el("span", { class: "fill" });
    fill.style.width = `${(share * 100).toFixed(1)}%`;
    const row = el("div", { class: `bar${name === highlight ? " best" : ""}`, "data-name": name },
      el("span", { class: "name" }, name),
      el("span", { class: "track", role: "img", "aria-label": `${name} ${(share * 100).toFixed(1)}%` }, fill),
      el("span", { class: "value" }, `${(share * 100).toFixed(1)}%`));
    box.append(row);
  }
}

function findingsTable(findings) {
  if (!findings || !findings.length) return el("p", { class: "muted" }, "no findings");
  const body = el("tbody");
  for (const f of findings) {
    body.append(el("tr", { class: `action-${f.action || "allow"}` },
      el("td", {}, f.input || f.modality || ""),
      el("td", {}, f.type),
      el("td", {}, el("code", {}, f.snippet || "")),
      el("td", {}, el("span", { class: `badge ${f.action === "block" ? "bad" : f.action === "redact" ? "warn" : "ok"}` }, f.action || "allow")),
      el("td", { class: "muted" }, f.explanation || "")));
  }
  const redacted = findings.filter((f) => f.action === "redact").length;
  return el("div", {},
    redacted ? el("p", { id: "redactions" }, `${redacted} span${redacted > 1 ? "s" : ""} redacted before the model saw the input`) : null,
    el("table", { class: "findings" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "input"), el("th", { scope: "col" }, "type"),
        el("th", { scope: "col" }, "snippet (masked)"), el("th", { scope: "col" }, "action"),
        el("th", { scope: "col" }, "why"))),
      body));
}

function showResult(body) {
  const prediction = body.prediction || {};
  $("label").textContent = String(prediction.label);
  $("degraded").hidden = !body.degraded;
  const reasons = $("degraded-reasons");
  reasons.replaceChildren();
  for (const [modality, reason] of Object.entries(body.degraded_reasons || {})) {
    reasons.append(el("li", {}, el("strong", {}, modality), `: ${reason.replaceAll("_", " ")}`));
  }
  reasons.hidden = !reasons.children.length;
  const review = body.review || {};
  $("review").textContent = review.routed
    ? `sent to human review: ${review.reasons.map((r) => r.replaceAll("_", " ")).join(", ")}`
    : "";
  $("review").hidden = !review.routed;
  bars("probabilities", prediction.probabilities, { highlight: String(prediction.label) });
  bars("contributions", body.contributions);
  $("used").textContent = (body.modalities_used || []).join(", ") || "none";
  $("findings").replaceChildren(findingsTable(body.findings));
  showOutputScan(body.output_scan);
  showSync(body.sync);
  showFrames(body.frames);
  $("request-id").textContent = body.request_id || "";
  const timings = Object.entries(body.timings_ms || {}).map(([k, v]) => `${k} ${Number(v).toFixed(1)} ms`);
  const cached = (body.cache_hits || []).length ? ` · cached: ${body.cache_hits.join(", ")}` : "";
  $("timings").textContent = timings.join(" · ") + cached;
  $("result").hidden = false;
}

// Which frames mattered: one bar per sampled frame (how much the answer's probability drops
// without it); a click plays the video from that frame.
function showFrames(frames) {
  const box = $("frames");
  box.replaceChildren();
  const entries = Object.entries(frames || {});
  $("frames-section").hidden = !entries.length;
  for (const [modality, fx] of entries) {
    const top = Math.max(1e-9, ...fx.frames.map((f) => Math.max(0, f.effect)));
    box.append(el("p", { class: "muted" }, `${modality}: without each frame, the probability of ${fx.label} drops by`));
    const bars = el("div", { class: "bars" });
    for (const f of fx.frames) {
      const fill = el("span", { class: "fill" });
      fill.style.width = `${((Math.max(0, f.effect) / top) * 100).toFixed(1)}%`;
      const row = el("button", { type: "button", class: "bar frame", "data-t": String(f.t), title: `play from ${f.t.toFixed(2)} s` },
        el("span", { class: "name" }, `${f.t.toFixed(2)} s`),
        el("span", { class: "track", role: "img", "aria-label": `frame at ${f.t.toFixed(2)} s` }, fill),
        el("span", { class: "value" }, `${f.effect >= 0 ? "+" : ""}${(f.effect * 100).toFixed(1)}%`));
      row.addEventListener("click", () => {
        const player = players.get(modality);
        if (player && player.src) { player.currentTime = f.t; player.play().catch(() => {}); }
      });
      bars.append(row);
    }
    box.append(bars);
  }
}

// Each video's sound against its picture: "sound 212 ms late (out of sync)".
function showSync(sync) {
  const line = $("sync");
  const entries = Object.entries(sync || {});
  line.hidden = !entries.length;
  line.textContent = entries.map(([modality, s]) => {
    if (!s) return `${modality}: no sound to line up`;
    const ms = Math.abs(s.av_offset_ms).toFixed(0);
    const side = s.av_offset_ms > 0 ? "late" : "early";
    return `${modality}: sound ${ms} ms ${side} (${s.desync ? "out of sync" : "in sync"})`;
  }).join(" · ");
  line.className = entries.some(([, s]) => s && s.desync) ? "badge warn" : "muted";
}

// The firewall's verdict on what the answer itself says (its labels): counts by type, no values.
function showOutputScan(scan) {
  const line = $("output-scan");
  line.hidden = !scan;
  if (!scan) return;
  const redacted = Object.entries(scan.redacted || {});
  line.textContent = redacted.length
    ? `answer redacted by the firewall: ${redacted.map(([type, n]) => `${type} × ${n}`).join(", ")}`
    : `answer checked by the firewall: ${scan.action === "allow" ? "nothing to redact" : scan.action}`;
}

// A typed error body is {"error": {code, message, hint, request_id, details}}.
function showError(body, response, fallback) {
  const err = (body && typeof body.error === "object" && body.error) || {};
  const status = response ? `${response.status} ${response.statusText}`.trim() : "";
  $("error-code").textContent = err.code || status;
  $("error-message").textContent = err.message || fallback || `the server answered ${status}`;
  $("error-hint").textContent = err.hint ? `hint: ${err.hint}` : "";
  const findings = err.details && err.details.findings;
  $("error-findings").replaceChildren(findings ? findingsTable(findings) : "");
  const requestId = err.request_id || (response && response.headers.get("X-Request-ID")) || "";
  $("error-request-id").textContent = requestId;
  $("error-request-id").parentElement.hidden = !requestId;
  $("error").hidden = false;
  $("result").hidden = true;
}

function hideError() {
  $("error").hidden = true;
}

// ------------------------------------------------------------------ start
document.addEventListener("DOMContentLoaded", () => {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  if (key.value) key.closest("details").open = true;
  key.addEventListener("change", () => {
    if (key.value.trim()) sessionStorage.setItem(KEY_STORE, key.value.trim());
    else sessionStorage.removeItem(KEY_STORE);
    loadInfo();
  });
  $("predict-form").addEventListener("submit", predict);
  $("clear").addEventListener("click", () => {
    for (const input of inputs.values()) input.clear();
    $("result").hidden = true;
    hideError();
  });
  loadInfo();
});
