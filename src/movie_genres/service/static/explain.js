// movie-genres explanation view: one POST /explain answer drawn for one chosen genre.
// - the overview's words, each highlighted by its weight (warm: pushed the genre up, cool: pulled it down);
// - the poster with the grid heatmap over it (same colours);
// - the genre's probability from the poster alone, the overview alone and both.
// No dependencies; text goes in with textContent only. Used by the service page and the report's samples page:
//   MovieGenresExplain.render(root, explanation, { overview, posterSrc, genre })
// draws into `root` (emptied first) and returns the genre shown; a genre switcher re-draws in place.
"use strict";

(function (global) {
  const UP = [234, 88, 12]; // weight > 0
  const DOWN = [37, 99, 235]; // weight < 0

  function colour(weight, scale) {
    const a = scale > 0 ? Math.min(1, Math.abs(weight) / scale) : 0;
    const [r, g, b] = weight >= 0 ? UP : DOWN;
    return `rgba(${r}, ${g}, ${b}, ${(0.85 * a).toFixed(3)})`;
  }

  function points(weight) {
    const v = weight * 100;
    return `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(1)} points`;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // The overview with each explained word in a <mark> (the text between words kept as it was). Offsets count code
  // points (Python's str indices), so the text is sliced as code points, not UTF-16 units.
  function renderWords(overview, spans, weights) {
    const chars = Array.from(overview);
    const slice = (a, b) => chars.slice(a, b).join("");
    const p = el("p", "xp-words");
    const byIndex = new Map(weights.map((w) => [w.i, w.weight]));
    const scale = Math.max(0, ...weights.map((w) => Math.abs(w.weight)));
    let at = 0;
    spans.forEach((s, i) => {
      if (s.start > at) p.append(slice(at, s.start));
      const w = byIndex.has(i) ? byIndex.get(i) : 0;
      const m = el("mark", "xp-word", slice(s.start, s.end));
      m.dataset.i = String(i);
      m.dataset.weight = String(w);
      m.style.background = colour(w, scale);
      m.title = `${s.text}: ${points(w)}`;
      p.append(m);
      at = s.end;
    });
    if (at < chars.length) p.append(slice(at));
    return p;
  }

  // The poster with one translucent cell per heatmap value on top.
  function renderHeatmap(posterSrc, heatmap) {
    const fig = el("figure", "xp-poster");
    const img = el("img");
    img.alt = "Poster";
    img.src = posterSrc;
    const grid = el("div", "xp-grid");
    const rows = heatmap.length;
    const cols = rows ? heatmap[0].length : 0;
    grid.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
    grid.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
    const scale = Math.max(0, ...heatmap.flat().map(Math.abs));
    heatmap.forEach((row, r) => row.forEach((w, c) => {
      const cell = el("div", "xp-cell");
      cell.dataset.row = String(r);
      cell.dataset.col = String(c);
      cell.dataset.weight = String(w);
      cell.style.background = colour(w, scale);
      cell.title = `greying this part moves it ${points(-w)}`;
      grid.append(cell);
    }));
    fig.append(img, grid);
    return fig;
  }

  // Poster alone / overview alone / both, as three bars.
  function renderModalities(byModality) {
    const ol = el("ol", "xp-modalities");
    for (const [key, label] of [["poster", "Poster alone"], ["overview", "Overview alone"], ["both", "Both"]]) {
      const p = byModality[key];
      const li = el("li", "xp-modality");
      li.dataset.modality = key;
      li.dataset.prob = String(p);
      const track = el("div", "bar-track");
      const fill = el("div", "bar-fill");
      fill.style.setProperty("--w", `${Math.max(0, Math.min(1, p)) * 100}%`);
      track.append(fill);
      li.append(el("span", "bar-name", label), track, el("span", "bar-value", `${(p * 100).toFixed(1)}%`));
      ol.append(li);
    }
    return ol;
  }

  function render(root, exp, opts) {
    opts = opts || {};
    const genres = Object.keys(exp.explanations || {});
    root.replaceChildren();
    root.classList.add("xp");
    if (!genres.length) return null;
    const genre = genres.includes(opts.genre) ? opts.genre : genres[0];
    const e = exp.explanations[genre];
    root.dataset.genre = genre;

    const head = el("div", "xp-head");
    if (genres.length > 1) {
      const pick = el("div", "xp-genres");
      pick.setAttribute("role", "tablist");
      for (const g of genres) {
        const b = el("button", "xp-genre", g);
        b.type = "button";
        b.dataset.genre = g;
        b.setAttribute("role", "tab");
        b.setAttribute("aria-selected", String(g === genre));
        b.addEventListener("click", () => render(root, exp, Object.assign({}, opts, { genre: g })));
        pick.append(b);
      }
      head.append(pick);
    }
    head.append(el("span", "small muted", `${genre} ${(e.probability * 100).toFixed(1)}% · threshold ${(e.threshold * 100).toFixed(1)}%`));
    root.append(head);

    if (e.by_modality) root.append(el("h3", null, "From each input"), renderModalities(e.by_modality));
    const body = el("div", "xp-body");
    if (e.heatmap && opts.posterSrc) {
      const col = el("div", "xp-col");
      col.append(el("h3", null, "Poster regions"), renderHeatmap(opts.posterSrc, e.heatmap));
      body.append(col);
    }
    if (exp.words && exp.words.length && opts.overview) {
      const col = el("div", "xp-col");
      col.append(el("h3", null, "Overview words"), renderWords(opts.overview, exp.words, e.words));
      body.append(col);
    }
    root.append(body);
    root.append(el("p", "legend small muted",
      "Orange pushed this genre up, blue pulled it down: each word dropped, each part of the poster greyed out, in turn."));
    return genre;
  }

  global.MovieGenresExplain = { render, colour };
})(typeof window !== "undefined" ? window : this);
