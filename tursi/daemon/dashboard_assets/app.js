// Tursi's dashboard: plain JavaScript, no dependencies, no build step. It speaks tursid's control API on its own
// origin with the session cookie; every state-changing call carries the session's CSRF token.
"use strict";

const state = { csrf: null, session: null, timers: [], aborts: [] };

// -- helpers ---------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(bytes), i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function ago(seconds) {
  if (!seconds) return "-";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 90) return `${Math.round(s)} seconds ago`;
  if (s < 5400) return `${Math.round(s / 60)} minutes ago`;
  if (s < 129600) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function toast(message, error = false) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = error ? "toast error" : "toast";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.add("hidden"), error ? 9000 : 3500);
}

class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
  }
}

async function api(method, path, body, { raw = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) { location.href = "/ui/"; throw new ApiError({ detail: "session ended" }, 401); }
  if (!resp.ok) {
    let problem = {};
    try { problem = await resp.json(); } catch (e) { problem = { detail: `HTTP ${resp.status}` }; }
    throw new ApiError(problem, resp.status);
  }
  return raw ? resp : resp.json();
}

// NDJSON (up's progress) or SSE (chat) read line by line as it arrives.
async function readLines(resp, onLine) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 1);
      if (line.trim()) onLine(line);
    }
  }
  if (buffer.trim()) onLine(buffer);
}

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

function leavePage() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.aborts.forEach((c) => c.abort());
  state.aborts = [];
}

function statusCell(dep) {
  const health = dep.health && dep.status === "running" ? ` (${dep.health})` : "";
  const cls = dep.health === "unhealthy" ? "unhealthy" : dep.status;
  return el("span", { class: `status ${cls}`, "data-status": dep.status, text: `${dep.status}${health}` });
}

function keepAlive(dep) {
  const value = dep.options && dep.options.keep_alive;
  if (dep.status === "idle") return "unloaded";
  return value === undefined || value === null ? "default" : String(value);
}

// -- pages -----------------------------------------------------------------------------------------

const pages = {};

pages.deployments = async (main) => {
  const table = el("table", { id: "deployments" });
  const progress = el("pre", { id: "up-progress", class: "progress hidden" });
  const form = upForm(progress);
  main.append(el("h1", { text: "Deployments" }), table, el("h2", { text: "Deploy a model" }), form, progress);
  every(2000, async () => {
    const deps = await api("GET", "/v1/deployments?all=1");
    table.replaceChildren(
      el("tr", {}, ["NAME", "MODEL", "STATUS", "RESTARTS", "ENDPOINT", "MEMORY", "KEEP-ALIVE", "CREATED", ""]
        .map((h) => el("th", { text: h }))),
      ...deps.map((dep) => el("tr", { "data-name": dep.name },
        el("td", {}, el("a", { href: `#/d/${encodeURIComponent(dep.name)}`, text: dep.name })),
        el("td", { class: "wrap", text: dep.model }),
        el("td", {}, statusCell(dep)),
        el("td", { text: dep.restart_count }),
        el("td", { text: dep.endpoint }),
        el("td", { text: `${size(dep.mem_bytes)} / ${size(dep.mem_need_bytes)}` }),
        el("td", { text: keepAlive(dep) }),
        el("td", { text: ago(dep.created_at) }),
        el("td", {}, actions(dep)),
      )),
    );
    if (!deps.length) table.append(el("tr", {}, el("td", { colspan: 9, class: "muted", text: "Nothing deployed yet." })));
  });
};

function actions(dep) {
  const act = (label, method, path, cls) => el("button", {
    class: cls, "data-action": label,
    onclick: async (event) => {
      event.target.disabled = true;
      try { await api(method, path); toast(`${label}: ${dep.name}`); }
      catch (e) { toast(e.message, true); }
      finally { event.target.disabled = false; }
    },
  }, label);
  const name = encodeURIComponent(dep.name);
  const loaded = ["running", "starting", "restarting"].includes(dep.status);
  return el("span", { class: "row" },
    loaded ? act("stop", "POST", `/v1/deployments/${name}/stop`) : act("start", "POST", `/v1/deployments/${name}/start`),
    act("remove", "DELETE", `/v1/deployments/${name}`, "danger"),
    el("a", { class: "button", href: `#/play/${name}`, text: "playground" }));
}

function specFields(prefix) {
  return [
    el("label", {}, "Model (hub id, path, GGUF, artifact key or registry ref)",
      el("input", { name: "model", id: `${prefix}-model`, required: true, placeholder: "minilm" })),
    el("label", {}, "Bits", el("select", { name: "bits" }, ["", "4", "8"].map((b) => el("option", { value: b, text: b || "auto" })))),
    el("label", {}, "Target profile", el("select", { name: "target", id: `${prefix}-target` },
      el("option", { value: "", text: "this machine" }),
      ...((state.session && state.session.hardware && state.targets) || []).map((t) => el("option", { value: t, text: t })))),
  ];
}

function specBody(form) {
  const data = new FormData(form);
  const body = {};
  for (const [key, value] of data.entries()) {
    if (value === "") continue;
    body[key] = ["bits", "port"].includes(key) ? Number(value) : value;
  }
  return body;
}

function upForm(progress) {
  const form = el("form", { class: "grid panel", id: "up-form" },
    ...specFields("up"),
    el("label", {}, "Name", el("input", { name: "name", id: "up-name" })),
    el("label", {}, "Port", el("input", { name: "port", type: "number", min: 1, max: 65535 })),
    el("label", {}, "Rate limit", el("input", { name: "rate_limit", placeholder: "10/second;burst=20" })),
    el("label", {}, "API key", el("input", { name: "api_key", placeholder: "none, a key, or auto" })),
    el("button", { class: "primary", type: "submit", id: "up-submit" }, "Deploy"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    progress.classList.remove("hidden");
    progress.textContent = "";
    try {
      const resp = await api("POST", "/v1/deployments", specBody(form), { raw: true });
      await readLines(resp, (line) => {
        const event = JSON.parse(line);
        if (event.event === "error") throw new ApiError(event, 500);
        if (event.event === "ready") {
          progress.textContent += `${event.deployment.name} is ready: ${event.deployment.endpoint}\n`;
          if (event.api_key) progress.textContent += `API key (shown once): ${event.api_key}\n`;
        } else if (event.event === "bytes") {
          progress.textContent += `${event.message}: ${size(event.done)} / ${size(event.total)}\n`;
        } else if (event.message) {
          progress.textContent += (event.step ? `[${event.step}/${event.steps}] ` : "") + `${event.message}\n`;
        }
      });
    } catch (e) {
      progress.textContent += `failed: ${e.message}\n`;
      toast(e.message, true);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

pages.plan = async (main) => {
  const out = el("div", { id: "plan-result" });
  const form = el("form", { class: "grid panel", id: "plan-form" },
    ...specFields("plan"),
    el("button", { class: "primary", type: "submit", id: "plan-submit" }, "Preview"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.replaceChildren(el("p", { class: "muted", text: "Planning…" }));
    try { out.replaceChildren(planView(await api("POST", "/v1/plan", specBody(form)))); }
    catch (e) { out.replaceChildren(el("p", { class: "status failed", text: e.message })); }
  });
  main.append(el("h1", { text: "Plan preview" }),
    el("p", { class: "muted", text: "What `tursi up` would do on this hardware, and why, without converting anything (tursi up --dry-run)." }),
    form, out);
};

function planView(answer) {
  const plan = answer.plan || {};
  const est = answer.estimate || {};
  const floor = answer.quality_floor || {};
  const rows = [
    ["Format", plan.format], ["Task", plan.task], ["Scheme", plan.quantization],
    ["Threads", answer.threads], ["Hardware", answer.hardware && (answer.hardware.name + " " + answer.hardware.arch)],
    ["Expected size", size(est.artifact_bytes)],
    ["Expected memory", `${size(est.memory_bytes)} of a ${size(est.memory_budget_bytes || answer.memory_budget_bytes)} budget`],
    ["Quality floor", floor.metric ? `${floor.metric} ≥ ${floor.min_quality}` : JSON.stringify(floor)],
    ["Already converted", answer.cached || (answer.built ? answer.artifact_key : "no")],
  ];
  const reasons = Object.entries(plan.reasons || {});
  return el("div", { class: "panel" },
    el("dl", { class: "kv" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v === undefined ? "-" : v })])),
    el("h2", { text: "Reasons" }),
    el("dl", { class: "kv", id: "plan-reasons" }, reasons.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
}

const CHARTS = [
  ["cpu", "CPU", (d) => d.cpu_percent, (v) => `${v.toFixed(0)} %`],
  ["mem", "Memory", (d) => d.mem_bytes, size],
  ["rps", "Requests/s", (d) => d.requests_per_s, (v) => v.toFixed(2)],
  ["p95", "p95 latency", (d) => d.p95_s === null || d.p95_s === undefined ? null : d.p95_s * 1000, (v) => `${v.toFixed(0)} ms`],
  ["tps", "Tokens/s", (d) => d.tokens_per_s, (v) => v.toFixed(1)],
  ["limited", "429s (total)", (d) => d.rate_limited, (v) => String(v)],
];

pages.d = async (main, name) => {
  const charts = el("div", { class: "charts", id: "charts" });
  const temp = chartBox("temp", "SoC temperature (°C); red: throttling");
  const log = el("div", { class: "log", id: "log" });
  const inspect = el("div", { class: "panel", id: "inspect" });
  main.append(el("h1", {}, `Deployment ${name} `, el("a", { class: "button", href: `#/play/${encodeURIComponent(name)}`, text: "playground" })),
    charts, el("h2", { text: "Log" }), log, el("h2", { text: "Inspect" }), inspect);
  const boxes = CHARTS.map(([id, title]) => chartBox(id, title));
  charts.append(...boxes, temp);
  every(2000, async () => {
    const samples = await api("GET", "/ui/history");
    CHARTS.forEach(([, , pick, fmt], i) => {
      const points = samples.map((s) => {
        const row = s.deployments.find((d) => d.name === name);
        const v = row ? pick(row) : null;
        return [s.at, v === null || v === undefined ? null : Number(v)];
      });
      drawChart(boxes[i], points, fmt);
    });
    const temps = samples.map((s) => [s.at, s.system.max_temperature_c]);
    const throttled = samples.map((s) => [s.at, Boolean(s.system.throttling && (s.system.throttling.throttled || s.system.throttling.freq_capped))]);
    drawChart(temp, temps, (v) => `${v.toFixed(1)} °C`, throttled);
  });
  followLog(name, log);
  try {
    const info = await api("GET", `/v1/deployments/${encodeURIComponent(name)}`);
    inspect.append(inspectView(info));
  } catch (e) { inspect.append(el("p", { class: "status failed", text: e.message })); }
};

function chartBox(id, title) {
  const plot = svg("svg", { viewBox: "0 0 300 90", preserveAspectRatio: "none" });
  return el("div", { class: "chart", "data-chart": id },
    el("div", { class: "title" }, el("span", { text: title }), el("span", { class: "value", text: "-" })), plot);
}

function drawChart(box, points, fmt, flags) {
  const plot = box.querySelector("svg");
  const known = points.filter(([, v]) => v !== null && !Number.isNaN(v));
  box.dataset.points = String(known.length);
  plot.replaceChildren(svg("line", { class: "grid", x1: 0, y1: 89, x2: 300, y2: 89 }));
  if (!points.length) return;
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  const x = (t) => ((t - t0) / (t1 - t0)) * 300;
  if (flags) {
    flags.forEach(([t, on], i) => {
      if (!on) return;
      const next = flags[i + 1] ? flags[i + 1][0] : t1;
      plot.append(svg("rect", { class: "throttle", x: x(t), y: 0, width: Math.max(1, x(next) - x(t)), height: 90 }));
    });
  }
  if (!known.length) { box.querySelector(".value").textContent = "-"; return; }
  const top = Math.max(...known.map(([, v]) => v)) || 1;
  const line = known.map(([t, v]) => `${x(t).toFixed(1)},${(86 - (v / top) * 80).toFixed(1)}`).join(" ");
  plot.append(svg("polyline", { points: line }));
  box.querySelector(".value").textContent = fmt(known[known.length - 1][1]);
}

async function followLog(name, box) {
  const control = new AbortController();
  state.aborts.push(control);
  try {
    const resp = await api("GET", `/v1/deployments/${encodeURIComponent(name)}/logs?tail=200&follow=1`, undefined,
      { raw: true, signal: control.signal });
    await readLines(resp, (line) => {
      box.append(line + "\n");
      while (box.childNodes.length > 2000) box.removeChild(box.firstChild);
      box.scrollTop = box.scrollHeight;
    });
  } catch (e) {
    if (e.name !== "AbortError") box.append(`[log ended: ${e.message}]\n`);
  }
}

function inspectView(info) {
  const manifest = info.manifest || {};
  const plan = manifest.plan || {};
  const rows = [
    ["Model", info.model], ["Task", info.task], ["Format", `${info.format} ${info.quantization}`],
    ["Endpoint", info.endpoint], ["Artifact", info.artifact_key],
    ["Quality vs fp32", JSON.stringify(manifest.quality || {})],
    ["Tools", Object.entries(manifest.tools || {}).map(([k, v]) => `${k} ${v}`).join(", ")],
  ];
  const events = (info.events || []).slice(-15);
  return el("div", {},
    el("dl", { class: "kv" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v || "-" })])),
    el("h2", { text: "Plan reasons" }),
    el("dl", { class: "kv" }, Object.entries(plan.reasons || {}).map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    el("h2", { text: "Events" }),
    el("table", {}, events.map((e) => el("tr", {}, el("td", { text: new Date(e.at * 1000).toLocaleTimeString() }),
      el("td", { text: e.kind || e.event || "" }), el("td", { class: "wrap", text: e.detail || e.message || "" })))));
}

pages.play = async (main, name) => {
  const deps = (await api("GET", "/v1/deployments?all=1")).filter((d) => !d.name.includes("#"));
  if (!name && deps.length) name = deps[0].name;
  const pick = el("select", { id: "play-model", onchange: (e) => { location.hash = `#/play/${encodeURIComponent(e.target.value)}`; } },
    deps.map((d) => el("option", { value: d.name, selected: d.name === name, text: `${d.name} (${d.task})` })));
  const key = el("input", { id: "play-key", placeholder: "API key, if the deployment has one" });
  main.append(el("h1", { text: "Playground" }), el("div", { class: "row panel" }, el("label", {}, "Deployment", pick), el("label", {}, "API key", key)));
  const dep = deps.find((d) => d.name === name);
  if (!dep) { main.append(el("p", { class: "muted", text: "Deploy a model first." })); return; }
  const area = el("div", { class: "panel", id: "play-area" });
  main.append(area);
  const headers = () => (key.value ? { Authorization: `Bearer ${key.value}` } : {});
  if (dep.task === "chat") chatPlayground(area, dep, headers);
  else if (dep.task === "embeddings") embeddingPlayground(area, dep, headers);
  else taskPlayground(area, dep, headers);
};

async function playCall(path, body, headers, signal) {
  const resp = await fetch(`/ui/play${path}`, {
    method: "POST", credentials: "same-origin", signal,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf, ...headers() },
    body: JSON.stringify(body),
  });
  if (!resp.ok) {
    let problem = {};
    try { problem = await resp.json(); } catch (e) { problem = { detail: `HTTP ${resp.status}` }; }
    throw new ApiError(problem.error && problem.error.message ? { detail: problem.error.message } : problem, resp.status);
  }
  return resp;
}

function chatPlayground(area, dep, headers) {
  const history = [];
  const chat = el("div", { class: "chat", id: "chat" });
  const input = el("textarea", { id: "chat-input", placeholder: "Ask something…" });
  const send = el("button", { class: "primary", id: "chat-send" }, "Send");
  const maxTokens = el("input", { id: "chat-max", type: "number", value: 64, min: 1, max: 4096 });
  area.append(chat, input, el("div", { class: "row" }, send, el("label", {}, "max tokens", maxTokens)));
  send.addEventListener("click", async () => {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    history.push({ role: "user", content: text });
    chat.append(el("div", { class: "msg user", text }));
    const reply = el("div", { class: "msg assistant", "data-streaming": "yes" });
    chat.append(reply);
    send.disabled = true;
    let content = "";
    try {
      const resp = await playCall("/v1/chat/completions",
        { model: dep.name, messages: history, stream: true, max_tokens: Number(maxTokens.value) || 64 }, headers);
      await readLines(resp, (line) => {
        if (!line.startsWith("data:")) return;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError({ detail: chunk.error.message }, 500);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) { content += delta.content; reply.textContent = content; chat.scrollTop = chat.scrollHeight; }
      });
      history.push({ role: "assistant", content });
    } catch (e) {
      reply.textContent = `error: ${e.message}`;
    } finally {
      reply.dataset.streaming = "no";
      send.disabled = false;
    }
  });
}

function embeddingPlayground(area, dep, headers) {
  const input = el("textarea", { id: "embed-input" });
  input.value = "A cat sits on the mat.\nA kitten rests on a rug.\nThe stock market fell today.";
  const go = el("button", { class: "primary", id: "embed-go" }, "Compare");
  const out = el("div", { id: "embed-out" });
  area.append(el("p", { class: "muted", text: "One text per line: their cosine similarity matrix." }), input, go, out);
  go.addEventListener("click", async () => {
    const texts = input.value.split("\n").map((t) => t.trim()).filter(Boolean);
    try {
      const resp = await playCall("/v1/embeddings", { model: dep.name, input: texts }, headers);
      const vectors = (await resp.json()).data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
      const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      const cos = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
      out.replaceChildren(el("table", { class: "matrix" },
        el("tr", {}, el("th"), texts.map((_, j) => el("th", { text: `#${j + 1}` }))),
        texts.map((t, i) => el("tr", {}, el("th", { class: "wrap", text: `#${i + 1} ${t}` }),
          vectors.map((_, j) => el("td", { "data-cell": `${i},${j}`, text: cos(vectors[i], vectors[j]).toFixed(3) }))))));
    } catch (e) { out.replaceChildren(el("p", { class: "status failed", text: e.message })); }
  });
}

function taskPlayground(area, dep, headers) {
  const path = dep.task === "fill-mask" ? "/v1/fill-mask" : dep.task === "classification" ? "/v1/classify" : null;
  if (!path) { area.append(el("p", { class: "muted", text: `No playground for task ${dep.task} yet.` })); return; }
  const input = el("textarea", { id: "task-input", placeholder: dep.task === "fill-mask" ? "Paris is the [MASK] of France." : "Text to classify" });
  const go = el("button", { class: "primary", id: "task-go" }, "Run");
  const out = el("div", { id: "task-out" });
  area.append(input, go, out);
  go.addEventListener("click", async () => {
    try {
      const resp = await playCall(path, { model: dep.name, input: [input.value] }, headers);
      const first = (await resp.json()).data[0];
      const answers = first.labels || first.predictions || [];
      out.replaceChildren(el("table", {}, answers.map((a) => el("tr", {},
        el("td", { text: a.label || a.token_str || a.token || a.sequence }), el("td", { text: Number(a.score).toFixed(4) })))));
    } catch (e) { out.replaceChildren(el("p", { class: "status failed", text: e.message })); }
  });
}

pages.images = async (main) => {
  const table = el("table", { id: "images" });
  const prune = el("button", { id: "prune", onclick: async () => {
    try { const r = await api("POST", "/v1/artifacts/prune"); toast(`removed ${r.removed.length}, freed ${size(r.freed_bytes)}`); load(); }
    catch (e) { toast(e.message, true); }
  } }, "Prune unused");
  main.append(el("div", { class: "row" }, el("h1", { text: "Images" }), prune), table);
  async function load() {
    const arts = await api("GET", "/v1/artifacts");
    table.replaceChildren(
      el("tr", {}, ["KEY", "SOURCE", "FORMAT", "TARGET", "SIZE", "USED BY", "CREATED", ""].map((h) => el("th", { text: h }))),
      ...arts.map((a) => el("tr", { "data-key": a.key },
        el("td", { text: a.key.slice(0, 12) }), el("td", { class: "wrap", text: a.source || "-" }),
        el("td", { text: `${a.format || "?"} ${a.quantization || ""}` }), el("td", { text: a.target || "-" }),
        el("td", { text: size(a.size_bytes) }), el("td", { text: a.used_by.join(", ") || "-" }),
        el("td", { text: ago(a.created_at) }),
        el("td", {}, el("button", { class: "danger", disabled: a.used_by.length > 0, onclick: async () => {
          try { await api("DELETE", `/v1/artifacts/${a.key}`); toast(`removed ${a.key.slice(0, 12)}`); load(); }
          catch (e) { toast(e.message, true); }
        } }, "remove")))));
  }
  await load();
};

// -- start -----------------------------------------------------------------------------------------

async function route() {
  leavePage();
  const [page, arg] = (location.hash.replace(/^#\//, "") || "deployments").split("/");
  const main = document.getElementById("main");
  main.replaceChildren();
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page || (page === "d" && a.dataset.page === "deployments")));
  const show = pages[page] || pages.deployments;
  try { await show(main, arg ? decodeURIComponent(arg) : undefined); }
  catch (e) { main.append(el("p", { class: "status failed", text: e.message })); }
}

async function start() {
  state.session = await api("GET", "/ui/session");
  state.csrf = state.session.csrf;
  const system = await api("GET", "/v1/system");
  state.targets = system.target_profiles || [];
  const hw = state.session.hardware || {};
  document.getElementById("machine").textContent =
    `${hw.arch || ""} ${hw.device || ""} · ${(hw.features || []).length} CPU features · budget ${size(state.session.memory_budget_bytes)}`;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/ui/logout");
    location.href = "/ui/";
  });
  window.addEventListener("hashchange", route);
  route();
}

start();
