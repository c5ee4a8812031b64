// The jaxedit editor page: vanilla JavaScript, no dependencies, talks to the routes of jaxedit.serve.server.
//
// Edits are sequential, in the order the sliders were first touched (a reset slider leaves the order).
// Dragging a slider ("input" events) asks for the preview when the server offers one; releasing it
// ("change") asks for the full image. Each new request aborts the one in flight (AbortController) and
// carries an increasing sequence number, so the server renders only the newest one waiting.
"use strict";

const $ = (id) => document.getElementById(id);

const page = {
  info: null,
  source: { seed: 0 },
  order: [], // attribute names, in touch order
  values: {}, // name -> alpha
  sliders: {}, // name -> {row, input, output}
  truncation: 1,
  layers: [0, 0],
  lastTouched: null,
  client: randomId(),
  seq: 0,
  inflight: {}, // channel -> AbortController
  urls: {}, // img id -> object URL shown
};

function randomId() {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function showError(message) {
  $("error").textContent = message || "";
}

async function errorOf(response) {
  try {
    const payload = await response.json();
    if (payload && payload.error) return payload.error;
  } catch (ignored) {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText}`;
}

async function post(path, body, signal, contentType) {
  const isJson = contentType === undefined;
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": isJson ? "application/json" : contentType },
    body: isJson ? JSON.stringify(body) : body,
    signal,
  });
  if (!response.ok) {
    const error = new Error(await errorOf(response));
    error.status = response.status;
    throw error;
  }
  return response;
}

function editBody(extra) {
  return Object.assign(
    {
      source: page.source,
      edits: page.order.map((name) => [name, page.values[name]]),
      truncation: page.truncation,
      layers: page.layers,
    },
    extra || {},
  );
}

function showBlob(imgId, blob) {
  const img = $(imgId);
  const url = URL.createObjectURL(blob);
  if (page.urls[imgId]) URL.revokeObjectURL(page.urls[imgId]);
  page.urls[imgId] = url;
  img.src = url;
}

// Render into one image channel ("after", "before", "paste"); a newer call on a channel aborts the older one.
async function render(channel, body, path) {
  if (page.inflight[channel]) page.inflight[channel].abort();
  const controller = new AbortController();
  page.inflight[channel] = controller;
  page.seq += 1;
  const seq = page.seq;
  const img = $(`${channel}-img`);
  img.dataset.state = "loading";
  const started = performance.now();
  try {
    const response = await post(path || "/api/render", Object.assign(body, { client: `${page.client}-${channel}`, seq }), controller.signal);
    const blob = await response.blob();
    if (controller.signal.aborted) return;
    showBlob(`${channel}-img`, blob);
    const preview = response.headers.get("X-Preview") === "1";
    img.dataset.state = preview ? "preview" : "full";
    img.dataset.seq = String(seq);
    if (channel === "after") {
      $("after-kind").textContent = preview ? `(preview ${page.info.preview_resolution} px)` : "";
      const ms = performance.now() - started;
      $("status").textContent = `${preview ? "preview" : "full"} in ${ms.toFixed(0)} ms (server ${response.headers.get("X-Render-Ms")} ms)`;
    }
    showError("");
  } catch (error) {
    if (error.name === "AbortError" || error.status === 409) return; // superseded by a newer request
    img.dataset.state = "error";
    showError(error.message);
  } finally {
    if (page.inflight[channel] === controller) delete page.inflight[channel];
  }
}

function renderAfter(preview) {
  const wantPreview = Boolean(preview && page.info.preview);
  render("after", editBody({ preview: wantPreview }));
  if (!wantPreview && page.source.photo) render("paste", editBody({}), "/api/paste");
}

function renderBefore() {
  render("before", editBody({ edits: [], preview: false }));
}

function renderAll() {
  renderBefore();
  renderAfter(false);
}

function updateOrder() {
  $("order").textContent = page.order.length
    ? page.order.map((name) => `${name} ${page.values[name].toFixed(2)}`).join(" \u2192 ")
    : "no edits";
  $("download-video").disabled = !page.lastTouched;
  $("download-video").textContent = page.lastTouched ? `Sweep video (${page.lastTouched})` : "Sweep video";
}

function touch(name, value) {
  if (!page.order.includes(name)) page.order.push(name);
  page.values[name] = value;
  page.lastTouched = name;
  page.sliders[name].row.classList.add("touched");
  page.sliders[name].output.textContent = value.toFixed(2);
  updateOrder();
}

function resetSlider(name) {
  page.order = page.order.filter((n) => n !== name);
  page.values[name] = 0;
  const slider = page.sliders[name];
  slider.input.value = "0";
  slider.output.textContent = "0.00";
  slider.row.classList.remove("touched");
  updateOrder();
}

function buildSliders() {
  const [low, high] = page.info.alpha_range;
  const container = $("sliders");
  for (const name of page.info.attributes) {
    const row = document.createElement("div");
    row.className = "slider";
    row.dataset.name = name;
    const id = `alpha-${name}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name.replace(/_/g, " ");
    label.title = name;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id, min: String(low), max: String(high), step: "0.05", value: "0" });
    input.dataset.name = name;
    const output = document.createElement("output");
    output.htmlFor = id;
    output.textContent = "0.00";
    const reset = document.createElement("button");
    Object.assign(reset, { type: "button", textContent: "\u21ba", title: `reset ${name}` });
    reset.className = "reset";
    reset.dataset.name = name;
    input.addEventListener("input", () => {
      touch(name, Number(input.value));
      renderAfter(true);
    });
    input.addEventListener("change", () => {
      touch(name, Number(input.value));
      renderAfter(false);
    });
    reset.addEventListener("click", () => {
      resetSlider(name);
      renderAfter(false);
    });
    row.append(label, input, output, reset);
    container.append(row);
    page.sliders[name] = { row, input, output };
    page.values[name] = 0;
  }
}

function applyFilter() {
  const words = $("filter").value.trim().toLowerCase().replace(/\s+/g, "_");
  for (const [name, slider] of Object.entries(page.sliders)) {
    slider.row.hidden = Boolean(words) && !name.toLowerCase().includes(words);
  }
}

function setSource(source, note) {
  page.source = source;
  $("source-note").textContent = note || "";
  const photo = Boolean(source.photo);
  $("aligned-figure").hidden = !photo;
  $("paste-figure").hidden = !photo;
  $("images").classList.toggle("photo", photo);
  renderAll();
}

function seedFromInput() {
  const text = $("seed").value.trim();
  if (!/^\d+$/.test(text) || Number(text) > page.info.seed_max) {
    showError(`seed: expected an integer 0..${page.info.seed_max}`);
    return;
  }
  setSource({ seed: Number(text) });
}

async function upload(path, file, limit, what) {
  if (file.size > limit) {
    showError(`${what}: ${file.name} is ${file.size.toLocaleString()} bytes, over the ${limit.toLocaleString()}-byte limit`);
    return null;
  }
  $("status").textContent = `uploading ${file.name} ...`;
  try {
    const response = await post(path, file, undefined, file.type || "application/octet-stream");
    return await response.json();
  } catch (error) {
    showError(error.message);
    return null;
  }
}

async function download(path, body, filename) {
  try {
    const response = await post(path, body);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

function setLayers() {
  const first = Number($("layer-first").value);
  const last = Number($("layer-last").value);
  const top = page.info.num_ws - 1;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last > top || first > last) {
    showError(`layers: expected 0 <= first <= last <= ${top}`);
    return;
  }
  page.layers = [first, last];
  renderAfter(false);
}

function wire() {
  $("seed").addEventListener("change", seedFromInput);
  $("random-seed").addEventListener("click", () => {
    const value = crypto.getRandomValues(new Uint32Array(1))[0];
    $("seed").value = String(value);
    setSource({ seed: value });
  });
  $("latent-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const result = await upload("/api/latent", file, page.info.max_latent_bytes, "latent");
    if (result) setSource({ latent: result.id }, `latent file ${file.name}`);
  });
  $("photo-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const result = await upload("/api/upload", file, page.info.max_upload_bytes, "photo");
    if (!result) return;
    $("aligned-img").src = result.aligned;
    setSource({ photo: result.id }, `photo ${file.name}: ${result.how}`);
  });
  $("truncation").addEventListener("input", () => {
    page.truncation = Number($("truncation").value);
    $("truncation-value").textContent = page.truncation.toFixed(2);
    renderAfter(true);
  });
  $("truncation").addEventListener("change", () => {
    page.truncation = Number($("truncation").value);
    renderAll();
  });
  $("layer-first").addEventListener("change", setLayers);
  $("layer-last").addEventListener("change", setLayers);
  $("reset-all").addEventListener("click", () => {
    for (const name of Object.keys(page.sliders)) resetSlider(name);
    page.lastTouched = null;
    updateOrder();
    renderAfter(false);
  });
  $("filter").addEventListener("input", applyFilter);
  $("download-png").addEventListener("click", () => download("/api/render", editBody({ preview: false }), "edited.png"));
  $("download-latents").addEventListener("click", () => download("/api/latents", editBody({}), "latents.npy"));
  $("download-video").addEventListener("click", () => {
    if (page.lastTouched) {
      download("/api/video", editBody({ attribute: page.lastTouched }), `sweep_${page.lastTouched}.gif`);
    }
  });
}

async function start() {
  try {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(await errorOf(response));
    page.info = await response.json();
  } catch (error) {
    showError(`cannot reach the editor: ${error.message}`);
    return;
  }
  const info = page.info;
  $("schematic-badge").hidden = !info.schematic;
  $("describe").textContent = info.describe;
  $("photo-row").hidden = !info.encoder;
  $("seed").max = String(info.seed_max);
  $("truncation").min = String(info.truncation_range[0]);
  page.truncation = info.defaults.truncation;
  $("truncation").value = String(page.truncation);
  $("truncation-value").textContent = page.truncation.toFixed(2);
  page.layers = info.defaults.layers.slice();
  for (const id of ["layer-first", "layer-last"]) $(id).max = String(info.num_ws - 1);
  $("layer-first").value = String(page.layers[0]);
  $("layer-last").value = String(page.layers[1]);
  buildSliders();
  wire();
  updateOrder();
  document.body.dataset.ready = "1";
  setSource({ seed: info.defaults.seed });
}

start();
