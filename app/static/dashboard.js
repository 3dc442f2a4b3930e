// EdgeOpt dashboards: each page asks one JSON endpoint and draws with plotly.
"use strict";
const EdgeOpt = (() => {
  const $ = (id) => document.getElementById(id);
  // A real figure: d decimals, or d significant digits below 1 so small values do not read 0.000.
  const real = (v, d = 3) => (typeof v !== "number" ? fmt(v) : Math.abs(v) >= 1 || v === 0 ? v.toFixed(d) : v.toPrecision(d));
  // JSON has no integer type: where a value's kind is not known, a whole number (id, count,
  // version, shots) prints without decimals, any other number as a real figure. Lists are
  // joined and objects spelled out, never "[object Object]".
  const fmt = (v, d = 3) => {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map((x) => fmt(x, d)).join(", ");
    if (typeof v === "object") return fields(v).map(([k, x]) => `${k}: ${fmt(x, d)}`).join("; ");
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : real(v, d);
  };
  // Held-out quality figures are real even when whole (a Spearman of 1, all within ±10%).
  const FIGURES = new Set(["spearman", "kendall", "rmse", "rmse_ms", "mae", "mape", "coverage", "within_10pct", "within_10pct_reliable",
    "mae_no_change", "mae_policy_mean", "spearman_policy_mean", "interval_coverage", "mean_change", "mean_abs_change"]);
  // Nested objects as flat key/value pairs ("cache.l2_kb"); lists of plain values stay one
  // value (fmt joins them), lists of objects are numbered ("cores[0].freq_mhz").
  const fields = (obj, prefix = "") => Object.entries(obj).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    if (Array.isArray(v) && v.some((x) => x !== null && typeof x === "object")) {
      return v.flatMap((x, i) => (x !== null && typeof x === "object" ? fields(x, `${key}[${i}]`) : [[`${key}[${i}]`, x]]));
    }
    return v !== null && typeof v === "object" && !Array.isArray(v) ? fields(v, key) : [[key, v]];
  });
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  const config = { responsive: true, displaylogo: false };
  // plotly.js 3+ ignores a plain string as an axis title: it must be { text }.
  const axis = (text, more = {}) => ({ title: { text }, automargin: true, ...more });
  const logAxis = (text) => axis(text, { type: "log", tickformat: "~g" }); // "20", not a bare "2"
  const UNITS = { latency_ms: "latency (ms)", energy_mj: "energy (mJ)", accuracy: "accuracy (%)", accuracy_change: "accuracy change (points)" };
  // Targets in top-1 points: linear axes, errors as differences rather than percentages.
  const POINTS = new Set(["accuracy", "accuracy_change"]);
  // One marker shape and colour per policy, the same in every trace of a chart.
  const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down", "pentagon", "hexagon", "star"];
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const byPolicy = (a, b) => (a === "fp32" ? -1 : b === "fp32" ? 1 : a.localeCompare(b)); // fp32 first
  const marker = (k, more = {}) => ({ symbol: SYMBOLS[k % SYMBOLS.length], color: COLORS[k % COLORS.length], ...more });
  const keyValues = (obj, d) => `<table>${fields(obj).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(FIGURES.has(k) ? real(v, d) : fmt(v, d))}</td></tr>`).join("")}</table>`;
  const jobError = (r) => (r.error ? `<span class="bad">${esc(r.error)}</span>` : "");
  const status = (text) => { $("status").textContent = text; };

  async function get(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  // mark(row) names a class for the row's <tr> ("" for none), to flag rows that need a look.
  function table(el, rows, columns, link, mark = () => "") {
    if (!rows.length) { el.innerHTML = '<p class="muted">none yet</p>'; return; }
    const head = columns.map((c) => `<th>${esc(c[1])}</th>`).join("");
    const body = rows.map((r) => {
      const cells = columns.map((c) => `<td>${c[2] ? c[2](r) : esc(fmt(r[c[0]]))}</td>`).join("");
      const cls = mark(r);
      return `<tr data-id="${r.id ?? ""}"${cls ? ` class="${cls}"` : ""}>${cells}</tr>`;
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
    })), { barmode: "group", margin: { t: 10 }, xaxis: axis("search space"), yaxis: axis("predictors") }, config);
    table($("optimizations"), d.optimizations, [["id", "id", (r) => `<a href="/ui/optimizations/${r.id}">${r.id}</a>`], ["device", "device"], ["policy", "policy"], ["latency_ms", "latency (ms)", (r) => real(r.latency_ms)], ["feasible", "feasible"]]);
    table($("jobs"), d.jobs, [["id", "id", (r) => `<a href="/ui/jobs">${r.id}</a>`], ["kind", "kind"], ["status", "status"], ["progress", "progress", (r) => `${Math.round(100 * r.progress)}%`], ["error", "error", jobError]]);
    status(`${d.devices.length} devices`);
  }

  async function device(id) {
    const d = await get(`/api/charts/devices/${id}`);
    $("title").textContent = `Device ${d.device.name}`;
    const { specs, ...fixed } = d.device;
    $("profile").innerHTML = keyValues({ ...fixed, ...(specs || {}) }, 2);
    const done = d.fingerprint.filter((f) => f.measured).length;
    $("fingerprint").innerHTML = `<p>${done} of ${d.fingerprint.length} measured</p>` +
      `<table>${d.fingerprint.map((f) => `<tr><td class="${f.measured ? "good" : "muted"}">${f.measured ? "measured" : "pending"}</td><td><code>${esc(f.design)}</code></td></tr>`).join("")}</table>`;
    // Each bar spans its bin, from its left edge (offset 0) to the next: on a log axis plotly's
    // default width (the smallest gap between centers, in ms) shrinks to slivers at large latencies.
    Plotly.newPlot($("latency-chart"), d.latency.map((h) => ({
      type: "bar", name: `${h.label} (${h.n})`, opacity: 0.7, offset: 0,
      x: h.edges.slice(0, -1), width: h.counts.map((_, i) => h.edges[i + 1] - h.edges[i]), y: h.counts,
      customdata: h.edges.slice(1), hovertemplate: "%{x:.3g} to %{customdata:.3g} ms: %{y} designs",
    })), { barmode: "overlay", bargap: 0, margin: { t: 10 }, xaxis: logAxis("latency (ms)"), yaxis: axis("designs") }, config);
    fronts(d.fronts);
    status(`${d.latency.reduce((a, h) => a + h.n, 0)} measurements`);
  }

  // One marker per point: a cross where the latency is an extrapolation, open where its
  // interval spans more than a factor of 3, a plain dot otherwise.
  function pointMarkers(points, base = {}) {
    return {
      ...base,
      symbol: points.map((p) => (p.extrapolated ? "x" : p.uncertain ? `${base.symbol || "circle"}-open` : base.symbol || "circle")),
      color: points.map((p) => (p.extrapolated ? "#b3261e" : p.uncertain ? "#7f7f7f" : base.color || "#1f77b4")),
    };
  }

  // Per space measured in several policies: measured latency against accuracy, each point
  // marked by its policy, the non-dominated ones (none faster and more accurate) outlined.
  function fronts(list) {
    const el = $("fronts");
    if (!list.length) {
      el.innerHTML = '<p class="muted" id="no-front">Each space was measured in one policy: a latency-accuracy front across policies appears once a second policy (int8, say) is measured.</p>';
      return;
    }
    el.innerHTML = list.map((f) => `<div class="front" id="front-${esc(f.space)}"><h3>${esc(f.space)}</h3>${frontSource(f)}${f.message
      ? `<p class="bad front-message">${esc(f.message)}</p>`
      : `<div class="grid"><div id="front-chart-${esc(f.space)}" class="chart"></div><div id="front-table-${esc(f.space)}" class="scroll tall"></div></div>`}</div>`).join("");
    list.filter((f) => !f.message).forEach(frontChart);
  }

  function frontSource(f) {
    const lines = f.policies.map((p) => `<li><b>${esc(p.policy)}</b>: ${p.designs} designs measured, ${p.with_accuracy} with accuracy` +
      `${p.method ? ` (method <code>${esc(p.method)}</code>: ${esc(p.how)})` : ""}${p.note ? ` <span class="muted">${esc(p.note)}</span>` : ""}</li>`).join("");
    const where = f.dataset ? `Accuracy on <b class="front-dataset">${esc(f.dataset)}</b> (top-1 %), by policy:` : "No dataset has accuracy for these policies:";
    const shown = f.points ? `<p class="muted">All ${f.front.length} front points shown, and ${f.shown.length} of the other ${f.points - f.front.length}.</p>` : "";
    return `<p>${where}</p><ul class="front-policies">${lines}</ul>${shown}`;
  }

  function frontChart(f) {
    const policies = f.policies.map((p) => p.policy);
    const hover = "%{customdata[0]}<br>%{customdata[1]}: %{x:.3g} ms, %{y:.2f}% [%{customdata[2]:.2f}, %{customdata[3]:.2f}]<extra></extra>";
    const trace = (points, k, more) => ({
      type: "scatter", mode: "markers", legendgroup: policies[k],
      x: points.map((p) => p.latency_ms), y: points.map((p) => p.accuracy),
      customdata: points.map((p) => [p.design, p.policy, p.low, p.high]), hovertemplate: hover, ...more,
    });
    const traces = policies.map((p, k) => trace(f.shown.filter((x) => x.policy === p), k, { name: p, marker: marker(k, { size: 6, opacity: 0.4 }) }));
    traces.push({ type: "scatter", mode: "lines", name: "Pareto front", x: f.front.map((p) => p.latency_ms), y: f.front.map((p) => p.accuracy), line: { color: "#1d2733", width: 1.5 }, hoverinfo: "skip" });
    policies.forEach((p, k) => {
      const points = f.front.filter((x) => x.policy === p);
      if (points.length) {
        traces.push(trace(points, k, {
          name: `${p} on the front`, marker: pointMarkers(points, marker(k, { size: 12, line: { width: 2, color: "#1d2733" } })),
          error_y: { type: "data", symmetric: false, array: points.map((x) => x.high - x.accuracy), arrayminus: points.map((x) => x.accuracy - x.low), thickness: 1, width: 3, color: "#1d2733" },
        }));
      }
    });
    Plotly.newPlot($(`front-chart-${f.space}`), traces, { margin: { t: 10 }, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, xaxis: logAxis("measured latency (ms)"), yaxis: axis(`accuracy on ${f.dataset} (top-1 %)`) }, config);
    table($(`front-table-${f.space}`), f.front, [
      ["latency_ms", "latency (ms)", (r) => esc(real(r.latency_ms))],
      ["accuracy", "accuracy (%)", (r) => esc(real(r.accuracy, 2))],
      ["interval", "90% interval", (r) => (r.low === r.high ? "recorded" : `${esc(real(r.low, 2))} to ${esc(real(r.high, 2))}${r.uncertain ? ' <span class="bad">(over 3x: uncertain)</span>' : ""}`)],
      ["policy", "policy", (r) => `<span class="policy" style="color: ${COLORS[policies.indexOf(r.policy) % COLORS.length]}">${esc(r.policy)}</span>`],
      ["design", "design", (r) => `<code>${esc(r.design)}</code>`],
    ]);
  }

  async function predictors(selected) {
    const rows = await get("/api/charts/predictors");
    const cols = [["id", "id"], ["target", "target"], ["space", "space"], ["scope", "device / dataset"], ["policy", "policy"], ["version", "v"], ["unit", "unit"],
      ["spearman", "Spearman"], ["kendall", "Kendall"], ["rmse", "RMSE"], ["mae", "MAE"], ["mape", "MAPE %"], ["within_10pct", "within ±10%"], ["within_10pct_reliable", "±10%, stable measurements"], ["coverage", "90% coverage"]]
      .map(([k, label]) => (FIGURES.has(k) ? [k, label, (r) => esc(real(r[k], k === "mape" ? 2 : 3))] : [k, label]));
    const suite = transferSuite();
    const curves = familyCurves();
    table($("table"), rows, cols, (id) => show(Number(id)));
    if (rows.length) await show(selected || rows[0].id);
    await suite;
    await curves;
    status(`${rows.length} predictors`);
  }

  // The cross-class validation suite: what a device of a class no predictor was trained on
  // gets from a few measured designs (shots), beside the ridge baseline given the same shots.
  async function transferSuite() {
    const d = await get("/api/charts/transfer-suite");
    const el = $("transfer-suite");
    if (!d.spaces.length) {
      el.innerHTML = `<p class="muted" id="suite-not-run">The suite has not been run: no transfer_suite_&lt;space&gt;.json in <code>${esc(d.folder)}</code>. ` +
        `Run <code>${esc(d.command)}</code> to write them.</p>`;
      return;
    }
    el.innerHTML = d.spaces.map((s) => `<div class="suite" id="suite-${esc(s.space)}"><h3>${esc(s.space)}</h3>${s.error
      ? `<p class="bad suite-error">${esc(s.file)}: ${esc(s.error)}</p>`
      : `<p class="muted">${esc([s.date, s.machine].filter((x) => x).join(" · "))}${s.command ? ` · <code>${esc(s.command)}</code>` : ""}</p>` +
        `<ul class="suite-summary">${s.summary.map((x) => `<li>${summaryLine(x, s.level)}</li>`).join("")}</ul>` +
        `<label>shots <select id="suite-shots-${esc(s.space)}"></select></label>` +
        `<div class="grid"><div id="suite-chart-${esc(s.space)}" class="chart"></div><div id="suite-table-${esc(s.space)}" class="scroll tall"></div></div>`}</div>`).join("");
    d.spaces.filter((s) => !s.error).forEach((s) => suiteSpace(s, d.below_baseline_margin));
  }

  const percent = (level) => (level === null || level === undefined ? "interval" : `${Math.round(100 * level)}%`);

  function summaryLine(x, level) {
    const [low, high] = x.coverage_range;
    return `${x.shots} shots: geometric-mean Spearman <b>${esc(real(x.geomean_spearman, 4))}</b> (ridge baseline ${esc(real(x.baseline_geomean_spearman, 4))}), ` +
      `<span class="${x.devices_below_baseline ? "bad" : ""}">devices below baseline: ${x.devices_below_baseline}</span>, ` +
      `${percent(level)} coverage ${esc(real(low, 4))} to ${esc(real(high, 4))} across splits`;
  }

  function suiteSpace(s, margin) {
    const shots = [...new Set(s.splits.map((r) => r.shots))].sort((a, b) => a - b);
    const select = $(`suite-shots-${s.space}`);
    select.innerHTML = shots.map((n) => `<option value="${n}">${n}</option>`).join("");
    select.value = String(shots[Math.floor((shots.length - 1) / 2)] ?? ""); // the middle shot count
    const band = s.coverage_band;
    const off = (c) => band && c !== null && (c < band[0] || c > band[1]);
    const draw = () => {
      const n = Number(select.value);
      const splits = s.splits.filter((r) => r.shots === n);
      const figures = splits.flatMap((r) => [r.spearman, r.baseline_spearman]).filter((v) => v !== null);
      Plotly.newPlot($(`suite-chart-${s.space}`), [
        { type: "bar", name: "few-shot transfer", x: splits.map((r) => r.split), y: splits.map((r) => r.spearman), customdata: splits.map((r) => r.description), hovertemplate: "%{x}: %{y:.4f}<br>%{customdata}<extra>transfer</extra>" },
        { type: "bar", name: "ridge baseline", x: splits.map((r) => r.split), y: splits.map((r) => r.baseline_spearman), hovertemplate: "%{x}: %{y:.4f}<extra>ridge baseline</extra>" },
      ], { barmode: "group", margin: { t: 30 }, legend: { orientation: "h", x: 0, y: 1.12 }, xaxis: axis(`split (${n} shots per unseen device)`), yaxis: axis("mean Spearman over unseen devices (-1 to 1)", { range: [Math.min(0, ...figures) - 0.05, 1.05] }) }, config);
      table($(`suite-table-${s.space}`), s.rows.filter((r) => r.shots === n), [
        ["split", "split", (r) => `<span title="${esc(r.description)}">${esc(r.split)}</span>`],
        ["device", "device"],
        ["spearman", "Spearman", (r) => esc(real(r.spearman, 4))],
        ["baseline_spearman", "ridge baseline", (r) => esc(real(r.baseline_spearman, 4))],
        ["coverage", `${percent(s.level)} coverage`, (r) => `<span class="${off(r.coverage) ? "bad" : ""}">${esc(real(r.coverage, 4))}</span>`],
        ["train", "trained on (devices)"],
      ], null, (r) => (r.below_baseline ? "below" : ""));
    };
    select.addEventListener("change", draw);
    draw();
    const described = new Map(s.splits.map((r) => [r.split, `${r.description} (${r.train} devices trained on, ${r.test} tested)`]));
    const note = document.createElement("div");
    note.className = "muted";
    note.innerHTML = `<ul>${[...described].map(([k, v]) => `<li><b>${esc(k)}</b>: ${esc(v)}</li>`).join("")}</ul>` +
      `<p>Shaded rows: Spearman more than ${esc(margin)} below the ridge baseline.${band ? ` Coverage in red: outside ${esc(band[0])} to ${esc(band[1])}.` : ""}</p>`;
    $(`suite-${s.space}`).appendChild(note);
  }

  // Validation by implementation family: each family held out in turn, the others as basis.
  // Quality against shots (a learning curve) for EdgeOpt and each baseline on the same shots.
  const METHOD_NAMES = { edgeopt: "EdgeOpt", ridge: "ridge", shots_only: "shots only", best_device: "best device" };
  async function familyCurves() {
    const d = await get("/api/charts/families");
    const el = $("family-curves"), r = d.result;
    if (!r) {
      el.innerHTML = `<p class="muted" id="families-not-run">The family benchmark has not been run: no families.json in <code>${esc(d.folder)}</code>. ` +
        `Run <code>${esc(d.command)}</code> to write it.</p>`;
      return;
    }
    if (r.error) { el.innerHTML = `<p class="bad" id="families-error">${esc(r.file)}: ${esc(r.error)}</p>`; return; }
    el.innerHTML = `<p class="muted" id="families-provenance">${esc([r.date, r.machine].filter((x) => x).join(" · "))}${r.command ? ` · <code>${esc(r.command)}</code>` : ""}</p>` +
      `<div class="grid">${r.families.map((f) => `<div class="family" id="family-${esc(f.family)}"><h3>${esc(f.family)} held out</h3>` +
        `<div id="family-chart-${esc(f.family)}" class="chart" style="height: 440px"></div><p class="muted family-note"></p></div>`).join("")}</div>` +
      (r.optimize.length ? `<h3>/optimize from the fingerprint, family held out</h3><div id="family-optimize" class="scroll"></div>` : "");
    r.families.forEach((f) => familyCurve(f, r.methods));
    if (r.optimize.length) {
      table($("family-optimize"), r.optimize, [["family", "family held out"], ["devices", "devices"],
        ["regret", "regret", (x) => esc(real(x.regret))], ["violation_rate", "violations", (x) => esc(real(x.violation_rate))],
        ["baseline_regret", "ridge regret", (x) => esc(real(x.baseline_regret))], ["baseline_violation_rate", "ridge violations", (x) => esc(real(x.baseline_violation_rate))]]);
    }
  }

  function familyCurve(f, methods) {
    const shots = f.points.map((p) => p.shots);
    const traces = methods.map((m, k) => {
      const name = METHOD_NAMES[m] || m;
      return { type: "scatter", mode: "lines+markers", name, x: shots, y: f.points.map((p) => p.spearman[m] ?? null),
        marker: marker(k), line: { color: COLORS[k % COLORS.length], width: m === "edgeopt" ? 3 : 1.5 }, hovertemplate: `%{x} shots: %{y:.3f}<extra>${esc(name)}</extra>` };
    });
    traces.push({ type: "scatter", mode: "lines+markers", name: "90% coverage (right axis)", yaxis: "y2", x: shots, y: f.points.map((p) => p.coverage_90),
      line: { color: "#7f7f7f", dash: "dot" }, marker: { symbol: "circle-open", color: "#7f7f7f" }, hovertemplate: "%{x} shots: %{y:.2f}<extra>90% coverage</extra>" });
    const figures = f.points.flatMap((p) => Object.values(p.spearman)).filter((v) => v !== null);
    Plotly.newPlot($(`family-chart-${f.family}`), traces, { margin: { t: 30 }, legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      xaxis: axis("shots (measured designs per device)", { type: "log", tickformat: "~g", tickvals: shots }), yaxis: axis("mean Spearman over its devices", { range: [Math.min(0.5, ...figures) - 0.05, 1.02] }),
      yaxis2: axis("90% interval coverage", { overlaying: "y", side: "right", range: [0, 1.02], tickvals: [0, 0.25, 0.5, 0.75, 0.9, 1], showgrid: false }) }, config);
    const last = f.points[f.points.length - 1];
    $(`family-${f.family}`).querySelector(".family-note").textContent = `${f.tested} devices tested, ${f.basis} basis devices. 90% coverage: ` +
      f.points.map((p) => `${p.shots} shots ${real(p.coverage_90, 2)}`).join(", ") +
      (last && last.worst_device ? `. Worst device at ${last.shots} shots: ${last.worst_device} (${last.worst_margin > 0 ? "+" : ""}${real(last.worst_margin)} Spearman over the best baseline).` : ".");
  }

  async function show(id) {
    document.querySelectorAll("#table tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === String(id)));
    const d = await get(`/api/charts/predictors/${id}`);
    const s = d.scatter, target = d.predictor.target;
    const lo = Math.min(...s.measured, ...s.predicted), hi = Math.max(...s.measured, ...s.predicted);
    const log = !POINTS.has(target), unit = UNITS[target] || target;
    const change = target === "accuracy_change";
    const byPolicyTraces = change && s.policy.length === s.measured.length;
    Plotly.newPlot($("scatter-chart"), [
      ...(byPolicyTraces ? changeTraces(s) : [{ type: "scattergl", mode: "markers", x: s.measured, y: s.predicted, name: "held-out designs", marker: { size: 4, opacity: 0.5 } }]),
      { type: "scatter", mode: "lines", x: [lo, hi], y: [lo, hi], name: "y = x", line: { dash: "dot" } },
    ], { margin: { t: 10 }, legend: byPolicyTraces ? { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" } : {}, xaxis: log ? logAxis(`measured ${unit}`) : axis(`measured ${unit}`), yaxis: log ? logAxis(`predicted ${unit}`) : axis(`predicted ${unit}`) }, config);
    $("scatter-note").textContent = change
      ? `Top-1 of the quantized design minus its fp32 top-1, in points, on ${s.measured.length} held-out (design, policy) pairs of designs never trained on${byPolicyTraces ? "; one marker per policy, bars: the 90% interval" : ""}.`
      : "";
    Plotly.newPlot($("errors-chart"), [{ type: "bar", x: d.errors.centers, y: d.errors.counts }],
      { margin: { t: 10 }, xaxis: axis(d.errors.unit === "%" ? "error (% of measured)" : `error (${d.errors.unit} of ${change ? "accuracy change" : "accuracy"})`), yaxis: axis(change ? "held-out pairs" : "designs") }, config);
    baselines(d.baselines);
    const q = d.predictor.quality;
    $("quality").innerHTML = `<p>${esc(d.predictor.target)} · ${esc(d.predictor.space)} · ${esc(d.predictor.device || d.predictor.dataset)} · ${esc(d.predictor.policy)} · v${d.predictor.version}</p>` +
      keyValues(q, 4);
    const figures = { spearman: "Spearman", coverage: "90% coverage", within_10pct: "within ±10%" };
    const shown = Object.keys(figures).filter((k) => d.versions.some((v) => v[k] !== undefined && v[k] !== null));
    const low = Math.min(0, ...shown.flatMap((k) => d.versions.map((v) => v[k] ?? 0)));
    Plotly.newPlot($("versions-chart"), shown.map((k) => ({
      type: "scatter", mode: "lines+markers", name: figures[k], x: d.versions.map((v) => `v${v.version}`), y: d.versions.map((v) => v[k]),
    })), { margin: { t: 10 }, xaxis: axis("predictor version", { type: "category" }), yaxis: axis("held-out figure (0 to 1)", { range: [low - 0.05, 1.05] }) }, config);
  }

  // An accuracy-change model's held-out pairs, one trace per policy, with the interval.
  function changeTraces(s) {
    const policies = [...new Set(s.policy)].sort(byPolicy);
    return policies.map((p, k) => {
      const rows = s.policy.flatMap((x, i) => (x === p ? [i] : []));
      const at = (values) => rows.map((i) => values[i]);
      return {
        type: "scatter", mode: "markers", name: p, x: at(s.measured), y: at(s.predicted),
        error_y: { type: "data", symmetric: false, array: rows.map((i) => s.high[i] - s.predicted[i]), arrayminus: rows.map((i) => s.predicted[i] - s.low[i]), thickness: 1, width: 0 },
        marker: marker(k, { size: 7, opacity: 0.75 }),
        hovertemplate: `${esc(p)}<br>measured %{x:.2f}, predicted %{y:.2f} points<extra></extra>`,
      };
    });
  }

  // The change model beside what needs no model: "no change" and each policy's mean change.
  function baselines(rows) {
    const el = $("baselines");
    if (!rows.length) { el.innerHTML = ""; return; }
    const cell = (v) => (v === null || v === undefined ? "n/a" : esc(real(v, 4)));
    el.innerHTML = "<p>Held-out figures beside two baselines that need no model: predicting no change, and predicting each policy's mean change.</p>" +
      `<table><thead><tr><th>figure</th><th>this predictor</th><th>no change</th><th>per-policy mean</th></tr></thead><tbody>${rows.map((r) =>
        `<tr><td>${esc(r.figure)}</td><td class="${r.better ? "good" : "bad"}">${cell(r.predictor)}</td><td>${cell(r.no_change)}</td><td>${cell(r.policy_mean)}</td></tr>`).join("")}</tbody></table>` +
      '<p class="muted">No change has no Spearman: a constant guess ranks nothing. Green: better than every baseline.</p>';
  }

  async function agreement(space) {
    const d = await get(`/api/charts/agreement/${space}`);
    if (!d.devices.length) { $("heatmap-chart").innerHTML = '<p class="muted">no latency measurements in this space</p>'; status("no data"); return; }
    Plotly.newPlot($("heatmap-chart"), [{ type: "heatmap", z: d.matrix, x: d.devices, y: d.devices, zmin: -1, zmax: 1, colorscale: "RdBu", reversescale: true, colorbar: { title: { text: "Spearman" } } }],
      { margin: { t: 10, l: 160, b: 160 }, xaxis: axis("device"), yaxis: axis("device", { autorange: "reversed" }) }, config);
    table($("proxies"), d.proxies, [["device", "device"], ["proxy", "proxy"], ["spearman", "Spearman", (r) => real(r.spearman, 3)], ["reused", "reused by /predict", (r) => (r.reused ? "yes" : "no: transfer adapts")]]);
    status(`${d.devices.length} devices, ${d.designs_used} designs`);
  }

  async function optimization(id) {
    const d = await get(`/api/charts/optimizations/${id}`);
    $("title").textContent = `Optimization ${d.id} for ${d.device}`;
    $("message").textContent = `${d.message} (method ${d.method}, ${real(d.elapsed_s, 2)} s)`;
    // a later measurement over the budget is a miss, shown before anything else on the page
    const missed = d.verified && d.verified.meets_budget === false;
    $("verdict").hidden = !missed;
    if (missed) $("verdict").textContent = `Missed the latency budget: measured ${real(d.verified.measured_ms)} ms on the device (${d.verified.by}${d.verified.at ? `, ${d.verified.at}` : ""}) against ${real((d.goals || {}).max_latency_ms)} ms.`;
    const g = d.goals || {};
    const asked = [["latency budget (ms)", g.max_latency_ms], ["energy budget (mJ)", g.max_energy_mj], ["minimum accuracy (%)", g.min_accuracy], ["objective", g.objective], ["confidence", d.confidence], ["dataset", d.dataset], ["measurements allowed", d.measurements ? `${d.measurements} used` : "none (predictions only)"]];
    $("goals").innerHTML = `<table>${asked.map(([k, x]) => `<tr><th>${esc(k)}</th><td>${esc(x === null || x === undefined ? "none" : fmt(x))}</td></tr>`).join("")}</table>`;
    const front = d.pareto, c = d.design;
    // an extrapolated latency (below what anything measured supports) is a cross, a point
    // whose interval spans over a factor of 3 an open marker: the fast end is not authoritative
    const doubt = (p) => [p.extrapolated ? "extrapolated" : "", p.uncertain ? "interval over 3x" : ""].filter(Boolean).join(", ");
    const traces = [{ type: "scatter", mode: "lines+markers", name: "Pareto front", x: front.map((p) => p.latency_ms), y: front.map((p) => p.accuracy),
      text: front.map((p) => `${p.arch} ${p.policy}${doubt(p) ? ` (${doubt(p)})` : ""}`), marker: pointMarkers(front) }];
    if (c) traces.push({ type: "scatter", mode: "markers", name: "chosen", x: [c.latency_ms.value], y: [c.accuracy ? c.accuracy.value : null], marker: { size: 14, symbol: "star", color: "#d62728" } });
    Plotly.newPlot($("pareto-chart"), traces, { margin: { t: 10 }, xaxis: logAxis("predicted latency (ms)"), yaxis: axis("predicted accuracy (%)") }, config);
    if (!c) {
      $("design-title").textContent = "Nothing met the goals";
      $("download").hidden = true;
      // the answer's message names each goal out of reach and the best within reach for it
      const closest = d.closest.map((x) => `<tr><td>${esc(x.arch)}</td><td>${esc(x.policy)}</td><td>${x.accuracy ? real(x.accuracy.value, 2) : "no model"}</td><td>${real(x.latency_ms.value)}</td><td>${real(x.probabilities.all)}</td></tr>`).join("");
      $("design").innerHTML = `<p>${esc(d.message)}</p><table><tr><th>closest design</th><th>policy</th><th>accuracy (%)</th><th>latency (ms)</th><th>P(goals met)</th></tr>${closest}</table>`;
      status(`${front.length} Pareto designs`);
      return;
    }
    const v = d.verification || {};
    const rows = [["design", c.arch], ["policy", c.policy],
      ["accuracy", c.accuracy ? `${real(c.accuracy.value, 2)} [${real(c.accuracy.low, 2)}, ${real(c.accuracy.high, 2)}]` : "no model"],
      ["latency (ms)", `${real(c.latency_ms.value)} [${real(c.latency_ms.low)}, ${real(c.latency_ms.high)}]${doubt(c) ? ` (${doubt(c)})` : ""}`],
      ["energy (mJ)", c.energy_mj ? real(c.energy_mj.value) : "no energy model"],
      ["P(goals met)", real(c.probabilities.all)],
      ["verified latency (ms)", v.status === "done" ? `${real(v.measured_latency_ms)}${v.error_pct !== undefined && v.error_pct !== null ? ` (${real(v.error_pct, 1)}% error, in interval: ${v.within_interval})` : " (measured by measure-and-refine)"}` : v.status || "not verified"],
      ["latency budget", !d.verified || d.verified.meets_budget === null ? "not verified against a budget" : d.verified.meets_budget ? "met when measured" : "MISSED when measured"]];
    $("design").innerHTML = `<table>${rows.map(([k, x]) => `<tr${k === "latency budget" && missed ? ' class="bad"' : ""}><th>${esc(k)}</th><td>${esc(x)}</td></tr>`).join("")}</table>`;
    status(`${front.length} Pareto designs`);
  }

  async function jobs() {
    let selected = null;
    async function refresh() {
      const page = await get("/jobs?limit=50");
      table($("jobs"), page.items, [["id", "id"], ["kind", "kind"], ["status", "status"], ["progress", "progress", (r) => `<progress max="1" value="${r.progress}"></progress> ${Math.round(100 * r.progress)}%`], ["message", "message"], ["error", "error", jobError]],
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
