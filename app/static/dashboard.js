// EdgeOpt dashboards: each page asks one JSON endpoint and draws with plotly.
"use strict";
const EdgeOpt = (() => {
  const $ = (id) => document.getElementById(id);
  const fmt = (v, d = 3) => (v === null || v === undefined ? "" : typeof v === "number" ? v.toFixed(d) : String(v));
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const config = { responsive: true, displaylogo: false };
  const status = (text) => { $("status").textContent = text; };

  async function get(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  function table(el, rows, columns, link) {
    if (!rows.length) { el.innerHTML = '<p class="muted">none yet</p>'; return; }
    const head = columns.map((c) => `<th>${esc(c[1])}</th>`).join("");
    const body = rows.map((r) => {
      const cells = columns.map((c) => `<td>${c[2] ? c[2](r) : esc(fmt(r[c[0]]))}</td>`).join("");
      return `<tr data-id="${r.id ?? ""}">${cells}</tr>`;
    }).join("");
    el.innerHTML = `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
    if (link) el.querySelectorAll("tbody tr").forEach((tr) => tr.addEventListener("click", () => link(tr.dataset.id)));
  }

  async function overview() {
    const d = await get("/api/charts/overview");
    table($("devices"), d.devices, [["name", "device", (r) => `<a href="/ui/devices/${r.id}">${esc(r.name)}</a>`], ["kind", "kind"], ["measurements", "measurements"]]);
    const targets = [...new Set(d.predictors.map((p) => p.target))];
    Plotly.newPlot($("predictors-chart"), targets.map((t) => ({
      type: "bar", name: t,
      x: d.predictors.filter((p) => p.target === t).map((p) => p.space),
      y: d.predictors.filter((p) => p.target === t).map((p) => p.count),
    })), { barmode: "group", margin: { t: 10 }, yaxis: { title: "predictors" } }, config);
    table($("optimizations"), d.optimizations, [["id", "id", (r) => `<a href="/ui/optimizations/${r.id}">${r.id}</a>`], ["device", "device"], ["policy", "policy"], ["latency_ms", "latency (ms)"], ["feasible", "feasible"]]);
    table($("jobs"), d.jobs, [["id", "id"], ["kind", "kind"], ["status", "status"], ["progress", "progress", (r) => `${Math.round(100 * r.progress)}%`]]);
    status(`${d.devices.length} devices`);
  }

  async function device(id) {
    const d = await get(`/api/charts/devices/${id}`);
    $("title").textContent = `Device ${d.device.name}`;
    const profile = Object.entries(d.device).filter(([k]) => k !== "specs").concat(Object.entries(d.device.specs || {}));
    $("profile").innerHTML = `<table>${profile.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v, 2))}</td></tr>`).join("")}</table>`;
    const done = d.fingerprint.filter((f) => f.measured).length;
    $("fingerprint").innerHTML = `<p>${done} of ${d.fingerprint.length} measured</p>` +
      `<table>${d.fingerprint.map((f) => `<tr><td class="${f.measured ? "good" : "muted"}">${f.measured ? "measured" : "pending"}</td><td><code>${esc(f.design)}</code></td></tr>`).join("")}</table>`;
    Plotly.newPlot($("latency-chart"), d.latency.map((h) => ({ type: "bar", name: `${h.label} (${h.n})`, x: h.centers, y: h.counts, opacity: 0.7 })),
      { barmode: "overlay", margin: { t: 10 }, xaxis: { type: "log", title: "latency (ms)" }, yaxis: { title: "designs" } }, config);
    status(`${d.latency.reduce((a, h) => a + h.n, 0)} measurements`);
  }

  async function predictors(selected) {
    const rows = await get("/api/charts/predictors");
    const cols = [["id", "id"], ["target", "target"], ["space", "space"], ["scope", "device / dataset"], ["policy", "policy"], ["version", "v"],
      ["spearman", "Spearman"], ["kendall", "Kendall"], ["rmse", "RMSE"], ["mape", "MAPE %", (r) => fmt(r.mape, 2)], ["within_10pct", "within ±10%"], ["within_10pct_reliable", "±10%, stable measurements"], ["coverage", "90% coverage"]];
    table($("table"), rows, cols, (id) => show(Number(id)));
    if (rows.length) await show(selected || rows[0].id);
    status(`${rows.length} predictors`);
  }

  async function show(id) {
    document.querySelectorAll("#table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === String(id)));
    const d = await get(`/api/charts/predictors/${id}`);
    const s = d.scatter;
    const lo = Math.min(...s.measured, ...s.predicted), hi = Math.max(...s.measured, ...s.predicted);
    const log = d.predictor.target !== "accuracy";
    Plotly.newPlot($("scatter-chart"), [
      { type: "scattergl", mode: "markers", x: s.measured, y: s.predicted, name: "held-out designs", marker: { size: 4, opacity: 0.5 } },
      { type: "scatter", mode: "lines", x: [lo, hi], y: [lo, hi], name: "y = x", line: { dash: "dot" } },
    ], { margin: { t: 10 }, xaxis: { title: "measured", type: log ? "log" : "linear" }, yaxis: { title: "predicted", type: log ? "log" : "linear" } }, config);
    Plotly.newPlot($("errors-chart"), [{ type: "bar", x: d.errors.centers, y: d.errors.counts }],
      { margin: { t: 10 }, xaxis: { title: `error (${d.errors.unit})` }, yaxis: { title: "designs" } }, config);
    const q = d.predictor.quality;
    $("quality").innerHTML = `<p>${esc(d.predictor.target)} · ${esc(d.predictor.space)} · ${esc(d.predictor.device || d.predictor.dataset)} · ${esc(d.predictor.policy)} · v${d.predictor.version}</p>` +
      `<table>${Object.entries(q).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v, 4))}</td></tr>`).join("")}</table>`;
    Plotly.newPlot($("versions-chart"), ["spearman", "coverage", "within_10pct"].filter((k) => d.versions.some((v) => v[k] !== undefined)).map((k) => ({
      type: "scatter", mode: "lines+markers", name: k, x: d.versions.map((v) => `v${v.version}`), y: d.versions.map((v) => v[k]),
    })), { margin: { t: 10 }, yaxis: { title: "figure" } }, config);
  }

  async function agreement(space) {
    const d = await get(`/api/charts/agreement/${space}`);
    if (!d.devices.length) { $("heatmap-chart").innerHTML = '<p class="muted">no latency measurements in this space</p>'; status("no data"); return; }
    Plotly.newPlot($("heatmap-chart"), [{ type: "heatmap", z: d.matrix, x: d.devices, y: d.devices, zmin: -1, zmax: 1, colorscale: "RdBu", reversescale: true, colorbar: { title: "Spearman" } }],
      { margin: { t: 10, l: 160, b: 160 }, yaxis: { autorange: "reversed" } }, config);
    table($("proxies"), d.proxies, [["device", "device"], ["proxy", "proxy"], ["spearman", "Spearman", (r) => fmt(r.spearman, 3)], ["reused", "reused by /predict", (r) => (r.reused ? "yes" : "no: transfer adapts")]]);
    status(`${d.devices.length} devices, ${d.designs_used} designs`);
  }

  async function optimization(id) {
    const d = await get(`/api/charts/optimizations/${id}`);
    $("title").textContent = `Optimization ${d.id} for ${d.device}`;
    $("message").textContent = `${d.message} (method ${d.method}, ${fmt(d.elapsed_s, 2)} s)`;
    const g = d.goals || {};
    const asked = [["latency budget (ms)", g.max_latency_ms], ["energy budget (mJ)", g.max_energy_mj], ["minimum accuracy (%)", g.min_accuracy], ["objective", g.objective], ["confidence", d.confidence], ["dataset", d.dataset], ["measurements allowed", d.measurements ? `${d.measurements} used` : "none (predictions only)"]];
    $("goals").innerHTML = `<table>${asked.map(([k, x]) => `<tr><th>${esc(k)}</th><td>${esc(x === null || x === undefined ? "none" : x)}</td></tr>`).join("")}</table>`;
    const front = d.pareto, c = d.design;
    const traces = [{ type: "scatter", mode: "lines+markers", name: "Pareto front", x: front.map((p) => p.latency_ms), y: front.map((p) => p.accuracy), text: front.map((p) => `${p.arch} ${p.policy}`) }];
    if (c) traces.push({ type: "scatter", mode: "markers", name: "chosen", x: [c.latency_ms.value], y: [c.accuracy ? c.accuracy.value : null], marker: { size: 14, symbol: "star", color: "#d62728" } });
    Plotly.newPlot($("pareto-chart"), traces, { margin: { t: 10 }, xaxis: { title: "predicted latency (ms)", type: "log" }, yaxis: { title: "accuracy (%)" } }, config);
    if (!c) {
      $("design-title").textContent = "Nothing met the goals";
      $("download").hidden = true;
      const closest = d.closest.map((x) => `<tr><td>${esc(x.arch)}</td><td>${esc(x.policy)}</td><td>${fmt(x.probabilities.all)}</td></tr>`).join("");
      $("design").innerHTML = `<p>No design meets every goal with probability at least ${esc(d.confidence)}. The closest, by that probability:</p><table><tr><th>design</th><th>policy</th><th>P(goals met)</th></tr>${closest}</table>`;
      status(`${front.length} Pareto designs`);
      return;
    }
    const v = d.verification || {};
    const rows = [["design", c.arch], ["policy", c.policy],
      ["accuracy", c.accuracy ? `${fmt(c.accuracy.value, 2)} [${fmt(c.accuracy.low, 2)}, ${fmt(c.accuracy.high, 2)}]` : "no model"],
      ["latency (ms)", `${fmt(c.latency_ms.value)} [${fmt(c.latency_ms.low)}, ${fmt(c.latency_ms.high)}]`],
      ["energy (mJ)", c.energy_mj ? fmt(c.energy_mj.value) : "no energy model"],
      ["P(goals met)", fmt(c.probabilities.all)],
      ["verified latency (ms)", v.status === "done" ? `${fmt(v.measured_latency_ms)}${v.error_pct !== undefined && v.error_pct !== null ? ` (${fmt(v.error_pct, 1)}% error, in interval: ${v.within_interval})` : " (measured by measure-and-refine)"}` : v.status || "not verified"]];
    $("design").innerHTML = `<table>${rows.map(([k, x]) => `<tr><th>${esc(k)}</th><td>${esc(x)}</td></tr>`).join("")}</table>`;
    status(`${front.length} Pareto designs`);
  }

  async function jobs() {
    let selected = null;
    async function refresh() {
      const page = await get("/jobs?limit=50");
      table($("jobs"), page.items, [["id", "id"], ["kind", "kind"], ["status", "status"], ["progress", "progress", (r) => `<progress max="1" value="${r.progress}"></progress> ${Math.round(100 * r.progress)}%`], ["message", "message"]],
        (id) => { selected = Number(id); refresh(); });
      if (selected === null && page.items.length) selected = page.items[0].id;
      if (selected !== null) {
        const job = await get(`/jobs/${selected}`);
        $("log-title").textContent = `Logs of job ${job.id} (${job.kind}, ${job.status})`;
        $("logs").textContent = job.logs.map((l) => `${l.created_at} ${l.level} ${l.line}`).join("\n");
      }
      status(`${page.total} jobs`);
    }
    await refresh();
    setInterval(refresh, 1000);
  }

  const guard = (fn) => (...args) => fn(...args).catch((e) => { status(`error: ${e.message}`); });
  return { overview: guard(overview), device: guard(device), predictors: guard(predictors), agreement: guard(agreement), optimization: guard(optimization), jobs: guard(jobs) };
})();
