// The page: photos in (choose, drop, paste, camera), one card per photo with every class's probability and
// "none of these", the app's keyboard labelling, Download CSV (picsort classify's columns) and the labels zip.
// Everything the visitor hands over (file names, the files themselves) is data: shown with textContent only,
// never as HTML. The model runs here, in ONNX Runtime Web's single-threaded WebAssembly (no server, no CDN).
import { modelView } from "./resize.js";
import { LabelStore, sha256 } from "./store.js";

const $ = (id) => document.getElementById(id);
const statusLine = $("status");
const cardsBox = $("cards");
const messages = $("messages");

// What the page knows about the files it gets: the first bytes of each format picsort reads, and its extension
// as picsort.photos.images.IMAGE_FORMATS names it (the labels zip uses it).
const SIGNATURES = [
  ["jpg", "JPEG", (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ["png", "PNG", (b) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47],
  ["gif", "GIF", (b) => b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38],
  ["webp", "WebP", (b) => text(b, 0, 4) === "RIFF" && text(b, 8, 12) === "WEBP"],
  ["bmp", "BMP", (b) => b[0] === 0x42 && b[1] === 0x4d],
  ["avif", "AVIF", (b) => text(b, 4, 8) === "ftyp" && /^avi[fs]/.test(text(b, 8, 12))],
  ["heic", "HEIC", (b) => text(b, 4, 8) === "ftyp" && /^(hei[cx]|hev[cx]|mif1|msf1)/.test(text(b, 8, 12))],
  ["tif", "TIFF", (b) => (b[0] === 0x49 && b[1] === 0x49 && b[2] === 42 && b[3] === 0) ||
                          (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && b[3] === 42)],
];
const BROWSER_CANNOT = new Set(["heic", "tif"]); // formats picsort reads that a browser does not decode

function text(bytes, start, end) {
  return String.fromCharCode(...bytes.subarray(start, end));
}

class UnusableImage extends Error {}

const cardOf = new WeakMap(); // a card's element -> its card
const state = {
  site: null, session: null, store: null, results: [], cards: new Map(), queue: Promise.resolve(),
  timings: [], loadedAt: null, pending: 0,
};
// For the tests and the benchmark: what the page answered, and when.
window.picsortWeb = { results: state.results, timings: state.timings, ready: null, busy: () => state.pending };

function say(message, kind = "") {
  statusLine.textContent = message;
  statusLine.className = kind;
}

function note(message) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  messages.append(line);
}

function percent(p) {
  return `${Math.round(p * 100)} %`;
}

function shownName(name) {
  // As picsort.photos.images.shown_name: no control, format or bidi characters, bounded length.
  let shown = String(name).replace(/[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}]/gu, "").trim() || "unnamed file";
  if (shown.length > 120) shown = shown.slice(0, 119) + "…";
  return shown;
}

function mb(bytes) {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

// ---- the model: a pool of workers, each with its own session --------------------------------------------------
class Pool {
  constructor(count, model, site) {
    this.waiting = []; // tasks with no free worker yet
    this.pending = new Map(); // task id -> { resolve, reject }
    this.nextId = 1;
    this.workers = [];
    this.failures = [];
    const loaded = [];
    for (let index = 0; index < count; index++) {
      const worker = new Worker("worker.js");
      const entry = { worker, ready: false, busy: false };
      this.workers.push(entry);
      loaded.push(new Promise((resolve, reject) => {
        worker.onmessage = ({ data }) => {
          if (data.type === "loaded") { entry.ready = true; resolve(); this.dispatch(); return; }
          if (data.type === "failed") { this.failures.push(data.message); reject(new Error(data.message)); return; }
          const task = this.pending.get(data.id);
          this.pending.delete(data.id);
          entry.busy = false;
          if (data.type === "result") task.resolve(data);
          else task.reject(new Error(data.message));
          this.dispatch();
        };
        worker.onerror = (event) => { this.failures.push(event.message || "the worker failed"); reject(new Error(event.message)); };
      }));
      worker.postMessage({ type: "load", model: model.slice(0), size: site.size,
                           wasmPaths: new URL("vendor/", location.href).href });
    }
    // Ready as soon as one worker is: the first photo need not wait for the others.
    this.ready = Promise.any(loaded).catch(() => { throw new Error(this.failures[0] || "no worker started"); });
  }

  run(view) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ view, resolve, reject });
      this.dispatch();
    });
  }

  dispatch() {
    for (const entry of this.workers) {
      if (!this.waiting.length) return;
      if (!entry.ready || entry.busy) continue;
      const task = this.waiting.shift();
      const id = this.nextId++;
      this.pending.set(id, task);
      entry.busy = true;
      entry.worker.postMessage({ type: "run", id, view: task.view }, [task.view.buffer]);
    }
  }
}

function workerCount() {
  const asked = Number(new URLSearchParams(location.search).get("workers"));
  if (asked >= 1 && asked <= 8) return Math.floor(asked);
  if ((navigator.deviceMemory || 8) < 4) return 1; // a small phone: one session's memory (~150 MB) is plenty
  return Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1));
}

async function loadModel() {
  const started = performance.now();
  const response = await fetch("site.json");
  if (!response.ok) throw new Error(`site.json: HTTP ${response.status}`);
  const site = await response.json();
  state.site = site;
  $("model-name").textContent = site.title;
  document.title = `picsort: ${site.title}`;
  $("keys-help").textContent = `Keys on a card: ${site.keys_help}. Tab moves between cards.`;
  state.store = new LabelStore(site.model_id);
  updateCounts();
  if (typeof WebAssembly === "undefined") throw new Error("this browser has no WebAssembly");
  const model = await fetch(site.model);
  if (!model.ok) throw new Error(`${site.model}: HTTP ${model.status}`);
  state.pool = new Pool(workerCount(), await model.arrayBuffer(), site);
  await state.pool.ready;
  state.session = state.pool;
  state.loadedAt = performance.now();
  say(`Ready: ${site.classes.length} classes (${site.classes.join(", ")}). Add photos.`);
  return performance.now() - started;
}

async function scores(view) {
  return state.pool.run(view);
}

function answer(raw) {
  const site = state.site;
  const probabilities = {};
  site.classes.forEach((name, index) => { probabilities[name] = raw.probabilities[index]; });
  let closest = site.classes[0];
  for (const name of site.classes) if (probabilities[name] > probabilities[closest]) closest = name;
  const check = site.none_of_these;
  const noneOfThese = (check.similarity_threshold !== null && raw.similarity < check.similarity_threshold) ||
                      (check.resemblance_threshold !== null && raw.resemblance < check.resemblance_threshold);
  const probability = probabilities[closest];
  return { closest, probability, probabilities, unsure: probability < site.threshold, none_of_these: noneOfThese,
           similarity: raw.similarity, resemblance: raw.resemblance,
           label: noneOfThese ? site.none_label : closest };
}

// ---- photos in ------------------------------------------------------------------------------------------------
async function decode(file, bytes) {
  const site = state.site;
  const label = `'${shownName(file.name)}'`;
  if (bytes.length === 0) throw new UnusableImage(`${label} is empty`);
  if (bytes.length > site.max_upload_bytes) {
    throw new UnusableImage(`${label} is larger than the ${mb(site.max_upload_bytes)} limit`);
  }
  const format = SIGNATURES.find(([, , test]) => test(bytes));
  if (!format) {
    throw new UnusableImage(`${label} is not an image (or not a format we can read). ` +
                            `Please use a ${site.accepted_formats} file.`);
  }
  const [extension, formatName] = format;
  if (BROWSER_CANNOT.has(extension)) {
    throw new UnusableImage(`${label} is a ${formatName} photo, which a browser cannot open: ` +
                            "convert it to JPEG, or sort it with picsort on a computer");
  }
  let bitmap;
  try {
    // As picsort.photos.images decodes: upright by the EXIF orientation, the stored colours (no colour-profile
    // conversion), no premultiplied alpha.
    bitmap = await createImageBitmap(new Blob([bytes]), { imageOrientation: "from-image",
      colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    throw new UnusableImage(`${label} is damaged or incomplete`);
  }
  const { width, height } = bitmap;
  if (width * height > site.max_image_pixels) {
    bitmap.close();
    throw new UnusableImage(`${label} is too large: ${Math.ceil((width * height) / 100000) / 10} megapixels, ` +
                            `the limit is ${site.max_image_pixels / 1e6} megapixels`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height, { colorSpace: "srgb" }).data;
  return { extension, view: modelView(rgba, width, height, site.size, site.extra), width, height };
}

function addFiles(files) {
  const images = [...files];
  if (!images.length) return;
  messages.replaceChildren();
  for (const file of images) {
    const card = newCard(file);
    state.pending += 1;
    const answered = inSlot(() => answerFor(file));
    // Answers come from the workers side by side; cards, results and the CSV keep the order the files came in.
    state.queue = state.queue.then(() => answered).then((result) => publish(card, result))
      .finally(() => { state.pending -= 1; });
  }
}

// At most one photo per worker (plus one being decoded) in hand at a time: a thousand photos dropped at once are
// decoded as workers come free, not all at once.
let slots = 0;
const slotQueue = [];
async function inSlot(task) {
  const limit = (state.pool ? state.pool.workers.length : workerCount()) + 1;
  if (slots >= limit) await new Promise((resolve) => slotQueue.push(resolve));
  slots += 1;
  try {
    return await task();
  } finally {
    slots -= 1;
    if (slotQueue.length) slotQueue.shift()();
  }
}

async function answerFor(file) {
  const started = performance.now();
  let result;
  let parts = null; // milliseconds spent decoding and resizing, and waiting for the network's answer
  try {
    if (!state.session) await window.picsortWeb.ready;
    const bytes = new Uint8Array(await file.arrayBuffer());
    const decodeStarted = performance.now();
    const decoded = await decode(file, bytes);
    const decodedAt = performance.now();
    const raw = await scores(decoded.view);
    parts = { decode: decodedAt - decodeStarted, network: performance.now() - decodedAt };
    const digest = await sha256(bytes);
    // The file itself is kept, not its bytes: read again only when it is labelled (a thousand photos stay cheap).
    result = { name: file.name, ...answer(raw), sha256: digest, extension: decoded.extension };
  } catch (error) {
    const message = error instanceof UnusableImage ? error.message
      : `'${shownName(file.name)}' could not be classified (${error && error.message ? error.message : error})`;
    result = { name: file.name, error: message };
  }
  result.timing = { started, finished: performance.now(), ...parts };
  return result;
}

function publish(card, result) {
  const { started, finished } = result.timing;
  state.timings.push({ name: result.name, started, finished, seconds: (finished - started) / 1000,
                       decode: result.timing.decode, network: result.timing.network });
  state.results.push(result);
  card.result = result;
  drawCard(card);
  $("download-csv").disabled = false;
}

// ---- cards ----------------------------------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child); // text as text
  return node;
}

function newCard(file) {
  const node = el("div", { class: "card", tabindex: "0", "data-state": "waiting" },
    el("div", { class: "name" }, shownName(file.name)), el("p", { class: "hint" }, "Classifying…"));
  cardsBox.append(node);
  const card = { node, file, result: null, url: null };
  cardOf.set(node, card); // redrawing by photo (a label, an undo) finds every card of it
  node.addEventListener("keydown", (event) => onKey(event, card));
  return card;
}

function drawCard(card) {
  const { node, result } = card;
  const site = state.site;
  node.replaceChildren(el("div", { class: "name" }, shownName(result.name)));
  if (result.error) {
    node.dataset.state = "problem";
    node.classList.add("problem-card");
    node.append(el("p", { class: "problem" }, `⚠ ${result.error}`), el("p", { class: "hint" }, "Nothing was saved for this file."));
    return;
  }
  node.dataset.state = "answered";
  if (!card.url) card.url = URL.createObjectURL(card.file);
  node.append(el("img", { src: card.url, alt: `photo ${shownName(result.name)}` }));
  const verdict = result.none_of_these
    ? `${site.none_text} (closest: ${result.closest}, ${percent(result.probability)})`
    : `${result.closest} ${percent(result.probability)}${result.unsure ? " (unsure)" : ""}`;
  node.append(el("div", { class: `verdict${result.none_of_these ? " none" : result.unsure ? " unsure" : ""}`,
                          "data-label": result.label }, verdict));
  for (const name of site.classes) {
    const p = result.probabilities[name];
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    node.append(el("div", { class: "bar", "data-class": name, "data-probability": String(p) },
      el("span", { class: "label", title: name }, name), el("div", { class: "track" }, fill),
      el("span", { class: "value" }, percent(p))));
  }
  const saved = state.store.labelOf(result.sha256);
  const buttons = el("div", { class: "labels", role: "group", "aria-label": "Label this photo" });
  site.classes.forEach((name, index) => {
    buttons.append(labelButton(card, name, site.class_keys[index] || "", name, saved === name));
  });
  buttons.append(labelButton(card, site.none_label, site.action_keys.none, site.none_text, saved === site.none_label));
  const undo = el("button", { type: "button", "data-key": site.action_keys.undo }, el("kbd", {}, site.action_keys.undo), "undo");
  undo.addEventListener("click", () => undoLast());
  buttons.append(undo);
  node.append(buttons);
  node.classList.toggle("labelled", saved !== null);
  if (saved !== null) {
    node.append(el("div", { class: "saved" }, `Saved as ${saved === site.none_label ? site.none_text : saved}`));
  }
}

function labelButton(card, label, key, words, chosen) {
  const button = el("button", { type: "button", "data-label": label, class: chosen ? "chosen" : null },
                    key ? el("kbd", {}, key) : null, words);
  button.addEventListener("click", () => labelCard(card, label));
  return button;
}

// Labels and undos run one after another, in the order of the keys pressed (a save waits for IndexedDB).
let labelling = Promise.resolve();
function inTurn(action) {
  labelling = labelling.then(action, action);
  return labelling;
}

function labelCard(card, label) {
  return inTurn(() => saveLabel(card, label));
}

async function saveLabel(card, label) {
  const result = card.result;
  if (!result || result.error) return;
  try {
    const bytes = new Uint8Array(await card.file.arrayBuffer());
    if ((await sha256(bytes)) !== result.sha256) throw new Error("the file changed since it was classified");
    await state.store.save(bytes, result.sha256, result.extension, label, {
      predicted: result.closest, probabilities: result.probabilities, originalName: result.name });
  } catch (error) {
    note(`The label for '${shownName(result.name)}' was not saved: ${error.message || error}`);
    return;
  }
  redrawPhoto(result.sha256);
  updateCounts();
}

function undoLast() {
  return inTurn(undoNow);
}

function undoNow() {
  const undone = state.store.undo();
  if (!undone) { say("Nothing to undo."); return; }
  redrawPhoto(undone.undone.sha256);
  updateCounts();
}

function redrawPhoto(digest) {
  for (const card of document.querySelectorAll(".card")) {
    const entry = cardOf.get(card);
    if (entry && entry.result && entry.result.sha256 === digest) {
      const focused = document.activeElement === card;
      drawCard(entry);
      if (focused) card.focus();
    }
  }
}


function onKey(event, card) {
  if (event.ctrlKey || event.metaKey || event.altKey || !card.result || card.result.error) return;
  const site = state.site;
  const key = event.key.length === 1 ? event.key.toUpperCase() : null;
  const classIndex = key ? site.class_keys.indexOf(key) : -1;
  let handled = true;
  if (classIndex >= 0 && classIndex < site.classes.length) {
    labelCard(card, site.classes[classIndex]);
    focusNext(card);
  } else if (key === site.action_keys.none) {
    labelCard(card, site.none_label);
    focusNext(card);
  } else if (key === site.action_keys.undo) {
    undoLast();
  } else if (key === site.action_keys.skip) {
    focusNext(card);
  } else {
    handled = false;
  }
  if (handled) event.preventDefault();
}

function focusNext(card) {
  const cards = [...cardsBox.querySelectorAll(".card")];
  const next = cards[cards.indexOf(card.node) + 1];
  if (next) next.focus();
}

function updateCounts() {
  const counts = state.store.counts();
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const site = state.site;
  $("label-counts").textContent = total
    ? `Labelled: ${Object.entries(counts).map(([k, v]) => `${k === site.none_label ? site.none_text : k} ${v}`).join(", ")}`
    : "";
  $("download-labels").disabled = total === 0;
  $("clear-labels").disabled = total === 0 && !state.store.lines().length;
}

// ---- downloads --------------------------------------------------------------------------------------------------
function escapeCell(value, path = false) {
  // picsort.batch.results.escape_cell: control characters as backslash escapes, a formula start gets a leading '.
  let cell = "";
  for (const ch of String(value)) {
    const escapes = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    if (ch in escapes) cell += escapes[ch];
    else if (/[\p{Cc}\p{Cs}\u2028\u2029]/u.test(ch)) {
      const code = ch.codePointAt(0);
      cell += code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
    } else cell += ch;
  }
  const starts = ["=", "+", "-", "@", ...(path ? ["'"] : [])];
  return starts.some((s) => cell.startsWith(s)) ? "'" + cell : cell;
}

function csvRow(cells) {
  return cells.map((cell) => (/[",\n\r]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell)).join(",") + "\n";
}

export function csvText() {
  const site = state.site;
  let out = csvRow(site.results_header.map((name) => escapeCell(name)));
  for (const result of state.results) {
    if (result.error) {
      out += csvRow([escapeCell(result.name, true), "", "", "", ...site.classes.map(() => ""), "false", "false",
                     escapeCell(result.error)]);
    } else {
      out += csvRow([escapeCell(result.name, true), escapeCell(result.label), escapeCell(result.closest),
                     result.probability.toFixed(8), ...site.classes.map((n) => result.probabilities[n].toFixed(8)),
                     String(result.unsure), String(result.none_of_these), ""]);
    }
  }
  return out;
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- wiring -----------------------------------------------------------------------------------------------------
function wire() {
  $("choose").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  $("camera").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  const zone = $("add");
  document.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  document.addEventListener("dragleave", () => zone.classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles(event.dataTransfer ? event.dataTransfer.files : []);
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? [...event.clipboardData.files] : [];
    if (files.length) { event.preventDefault(); addFiles(files); }
  });
  $("download-csv").addEventListener("click", () => {
    download(new Blob([csvText()], { type: "text/csv" }), "results.csv");
  });
  $("download-labels").addEventListener("click", async () => {
    const { blob } = await state.store.zip();
    download(blob, "labels.zip");
  });
  $("clear-labels").addEventListener("click", async () => {
    if (!confirm("Forget every label kept in this browser for this model?")) return;
    await state.store.clear();
    for (const card of document.querySelectorAll(".card")) { const entry = cardOf.get(card); if (entry?.result) drawCard(entry); }
    updateCounts();
  });
}

wire();
window.picsortWeb.csv = () => csvText();
window.picsortWeb.addFiles = (files) => addFiles(files);
window.picsortWeb.ready = loadModel().then((seconds) => { window.picsortWeb.loadSeconds = seconds / 1000; },
  (error) => {
    say(`The classifier could not start in this browser: ${error && error.message ? error.message : error}`, "error");
    throw error;
  });
