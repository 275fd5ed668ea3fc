// movie-genres page: pick a poster and/or paste an overview, POST /predict, draw every genre as a probability bar;
// then POST /explain in the background and draw why (explain.js), without holding up the prediction.
// No dependencies. Everything the server sends is written with textContent (never innerHTML).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("predict-form");
  const posterInput = $("poster-input");
  const dropzone = $("dropzone");
  const preview = $("poster-preview");
  const posterName = $("poster-name");
  const posterClear = $("poster-clear");
  const overview = $("overview-input");
  const count = $("overview-count");
  const button = $("predict-btn");
  const errorBox = $("error");
  const results = $("results");

  const SVG_NS = "http://www.w3.org/2000/svg";
  let limits = { max_upload_bytes: 10 * 1024 * 1024, max_overview_chars: 5000 };
  let modalities = ["poster", "overview"];
  let poster = null; // the chosen File
  let previewUrl = null;
  let explainSeq = 0; // the latest explanation asked for; an older answer that arrives late is dropped
  let explainUrl = null; // the explained poster's object URL (kept apart from the preview, which may change)

  // ------------------------------------------------------------------ model badge and limits
  // /health is 503 while the model warms up ("loading") or if its warm-up failed ("error"): ask again until it is up.
  async function loadHealth() {
    const badge = $("model-badge");
    try {
      const r = await fetch("/health", { cache: "no-store" });
      const h = r.status === 200 || r.status === 503 ? await r.json() : null;
      if (r.status === 503 && h && (h.status === "loading" || h.status === "error")) {
        const warming = h.status === "loading";
        badge.textContent = `${h.model} ${h.version} · ${warming ? "warming up\u2026" : "not ready"}`;
        badge.title = h.detail || "";
        badge.dataset.state = warming ? "warming" : "down";
        setTimeout(loadHealth, warming ? 1000 : 5000);
        return;
      }
      if (!r.ok || !h) throw new Error("HTTP " + r.status);
      badge.title = "";
      limits = Object.assign(limits, h.limits || {});
      modalities = h.modalities || modalities;
      badge.textContent = "";
      const dot = document.createElement("span");
      dot.className = "dot";
      badge.append(dot, `${h.model} ${h.version} · reads ${modalities.join(" + ")}`);
      badge.dataset.state = "up";
      badge.dataset.model = h.model;
      $("footer-model").textContent = `model ${h.model} ${h.version}, ${h.genres} genres`;
      $("overview-max").textContent = String(limits.max_overview_chars);
      $("poster-hint").textContent = `JPEG, PNG or WebP · up to ${formatBytes(limits.max_upload_bytes)}`;
      const note = $("modality-note");
      if (modalities.length === 1) {
        const other = modalities[0] === "poster" ? "overview" : "poster";
        note.textContent = `This model reads only the ${modalities[0]}; ${other === "overview" ? "an" : "a"} ${other} ` +
          "can be sent but is ignored.";
        note.hidden = false;
      }
      updateCount();
    } catch (e) {
      badge.textContent = "service unreachable";
      badge.dataset.state = "down";
    }
  }

  // ------------------------------------------------------------------ poster
  function setPoster(file) {
    hideError();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    poster = file || null;
    dropzone.dataset.broken = "false";
    if (!poster) {
      posterInput.value = "";
      preview.removeAttribute("src");
      posterName.textContent = "";
      dropzone.dataset.hasFile = "false";
      posterClear.hidden = true;
      return;
    }
    previewUrl = URL.createObjectURL(poster);
    preview.src = previewUrl;
    posterName.textContent = `${poster.name} · ${formatBytes(poster.size)}`;
    dropzone.dataset.hasFile = "true";
    posterClear.hidden = false;
    if (poster.size > limits.max_upload_bytes) {
      showError(`The poster is ${formatBytes(poster.size)}; the limit is ${formatBytes(limits.max_upload_bytes)}.`);
    }
  }

  posterInput.addEventListener("change", () => setPoster(posterInput.files && posterInput.files[0]));
  posterClear.addEventListener("click", () => setPoster(null));
  preview.addEventListener("error", () => {
    if (preview.getAttribute("src")) dropzone.dataset.broken = "true";
  });
  preview.addEventListener("load", () => { dropzone.dataset.broken = "false"; });
  ["dragenter", "dragover"].forEach((t) => dropzone.addEventListener(t, () => dropzone.classList.add("dragging")));
  ["dragleave", "drop"].forEach((t) => dropzone.addEventListener(t, () => dropzone.classList.remove("dragging")));

  // ------------------------------------------------------------------ overview
  function updateCount() {
    const n = overview.value.length;
    count.textContent = String(n);
    overview.classList.toggle("over", n > limits.max_overview_chars);
  }
  overview.addEventListener("input", updateCount);
  overview.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  // ------------------------------------------------------------------ submit
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    hideError();
    const text = overview.value.trim();
    if (!poster && !text) {
      showError("Choose a poster or paste an overview (or both).");
      return;
    }
    resetExplanation();
    const data = new FormData();
    if (poster) data.append("poster", poster, poster.name || "poster");
    if (text) data.append("overview", text);

    button.disabled = true;
    button.classList.add("busy");
    results.dataset.state = "loading";
    const started = performance.now();
    try {
      const r = await fetch("/predict", { method: "POST", body: data });
      let body = null;
      try { body = await r.json(); } catch (_) { /* not JSON */ }
      if (!r.ok) {
        const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${r.status}`;
        throw Object.assign(new Error(detail), { status: r.status });
      }
      render(body, { poster: !!poster, overview: !!text }, performance.now() - started);
      explainFilm(data, poster, text, body);
    } catch (err) {
      results.dataset.state = $("result-body").hidden ? "empty" : "stale";
      showError(err.message || String(err), err.status);
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  });

  $("clear-btn").addEventListener("click", () => {
    setPoster(null);
    overview.value = "";
    updateCount();
    hideError();
    $("result-body").hidden = true;
    $("empty-state").hidden = false;
    $("timing").textContent = "";
    results.dataset.state = "empty";
    resetExplanation();
  });

  // ------------------------------------------------------------------ explanation
  function resetExplanation() {
    explainSeq += 1;
    if (explainUrl) URL.revokeObjectURL(explainUrl);
    explainUrl = null;
    const card = $("explain-card");
    card.hidden = true;
    card.dataset.state = "empty";
    $("explanation").replaceChildren();
    $("explain-status").textContent = "";
    $("explain-timing").textContent = "";
  }

  // Not awaited by the submit handler: the prediction is on screen while this runs.
  async function explainFilm(data, file, text, answer) {
    resetExplanation();
    const seq = explainSeq;
    const card = $("explain-card");
    if (file) explainUrl = URL.createObjectURL(file);
    card.hidden = false;
    card.dataset.state = "loading";
    $("explain-status").textContent = "Working out which words and parts of the poster moved each genre…";
    const probs = answer.probabilities || {};
    const top = [...(answer.genres || [])].sort((a, b) => (probs[b] ?? 0) - (probs[a] ?? 0))[0];
    const started = performance.now();
    try {
      const r = await fetch("/explain", { method: "POST", body: data });
      let body = null;
      try { body = await r.json(); } catch (_) { /* not JSON */ }
      if (seq !== explainSeq) return;
      if (!r.ok) throw new Error(body && typeof body.detail === "string" ? body.detail : `HTTP ${r.status}`);
      const shown = window.MovieGenresExplain.render($("explanation"), body,
        { overview: text, posterSrc: explainUrl, genre: top });
      $("explain-status").textContent = shown ? "" : "Nothing to explain.";
      $("explain-timing").textContent = `${Math.round(performance.now() - started)} ms`;
      card.dataset.state = "done";
    } catch (err) {
      if (seq !== explainSeq) return;
      card.dataset.state = "error";
      $("explain-status").textContent = `No explanation: ${err.message || err}`;
    }
  }

  // ------------------------------------------------------------------ results
  function render(answer, sent, ms) {
    const probs = answer.probabilities || {};
    const decided = new Set(answer.genres || []);
    const used = new Set(answer.inputs_used || []);

    const chips = $("decided-genres");
    chips.replaceChildren();
    const decidedSorted = [...decided].sort((a, b) => (probs[b] ?? 0) - (probs[a] ?? 0) || a.localeCompare(b));
    for (const g of decidedSorted) {
      const li = document.createElement("li");
      li.className = "chip";
      li.dataset.genre = g;
      li.textContent = g;
      chips.append(li);
    }

    const inputs = $("inputs-used");
    inputs.replaceChildren();
    for (const m of ["poster", "overview"]) {
      const li = document.createElement("li");
      li.className = "input-chip";
      li.dataset.input = m;
      li.dataset.used = String(used.has(m));
      const status = used.has(m) ? "used" : sent[m] ? "ignored" : "not sent";
      li.dataset.status = status;
      const label = `${m[0].toUpperCase()}${m.slice(1)}`;
      li.textContent = status === "used" ? `✓ ${label}` : `${label} · ${status}`;
      li.title = status === "used" ? `the model read the ${m}`
        : status === "ignored" ? `the ${m} was sent, but this model does not read it` : `no ${m} was sent`;
      inputs.append(li);
    }

    const rows = Object.entries(probs).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const bars = $("bars");
    bars.replaceChildren();
    for (const [genre, p] of rows) {
      const li = document.createElement("li");
      li.className = "bar" + (decided.has(genre) ? " decided" : "");
      li.dataset.genre = genre;
      li.dataset.prob = String(p);
      li.dataset.decided = String(decided.has(genre));
      li.title = `${genre}: ${p}`;

      const name = document.createElement("span");
      name.className = "bar-name";
      if (decided.has(genre)) name.append(checkIcon());
      name.append(genre);

      const track = document.createElement("div");
      track.className = "bar-track";
      track.setAttribute("role", "meter");
      track.setAttribute("aria-label", genre);
      track.setAttribute("aria-valuemin", "0");
      track.setAttribute("aria-valuemax", "1");
      track.setAttribute("aria-valuenow", String(p));
      const fill = document.createElement("div");
      fill.className = "bar-fill";
      fill.style.setProperty("--w", `${Math.max(0, Math.min(1, p)) * 100}%`);
      track.append(fill);

      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = formatPercent(p);

      li.append(name, track, value);
      bars.append(li);
    }

    $("timing").textContent = `${answer.model} ${answer.version} · ${Math.round(ms)} ms`;
    $("empty-state").hidden = true;
    $("result-body").hidden = false;
    results.dataset.state = "done";
    results.dataset.model = answer.model;
  }

  function checkIcon() {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", "check");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", "M5 12.5l4.5 4.5L19 7.5");
    svg.append(path);
    return svg;
  }

  // ------------------------------------------------------------------ helpers
  function showError(message, status) {
    errorBox.replaceChildren();
    const title = document.createElement("strong");
    title.textContent = status ? `Refused (HTTP ${status})` : "Cannot send this";
    errorBox.append(title, message);
    errorBox.dataset.status = status ? String(status) : "";
    errorBox.hidden = false;
  }

  function hideError() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    errorBox.dataset.status = "";
  }

  function formatPercent(p) {
    const pct = p * 100;
    if (pct > 0 && pct < 0.1) return "<0.1%";
    return `${pct.toFixed(1)}%`;
  }

  function formatBytes(n) {
    if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MB`;
    if (n >= 1024) return `${Math.round(n / 1024)} KB`;
    return `${n} bytes`;
  }

  loadHealth();
})();
