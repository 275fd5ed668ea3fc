// Offline API docs: renders /openapi.json (paths, form fields, responses) without Swagger UI or any CDN.
"use strict";

(function () {
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  // Tiny Markdown subset: paragraphs, "* " lists, **bold**, `code`, and one-line code blocks starting with "curl".
  function markdown(text) {
    const out = document.createDocumentFragment();
    for (const block of (text || "").split(/\n\s*\n/)) {
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*[*-] /.test(l) || /^\s+\S/.test(l))) {
        const ul = el("ul");
        let current = null;
        for (const l of lines) {
          if (/^\s*[*-] /.test(l)) { current = el("li"); ul.append(current); inline(current, l.replace(/^\s*[*-] /, "")); }
          else if (current) inline(current, " " + l.trim());
        }
        out.append(ul);
      } else if (/^`curl .*`$/.test(block.trim())) {
        out.append(el("pre", {}, el("code", { textContent: block.trim().slice(1, -1) })));
      } else {
        const p = el("p");
        inline(p, lines.join(" "));
        out.append(p);
      }
    }
    return out;
  }

  function inline(parent, text) {
    for (const piece of text.split(/(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)/)) {
      if (!piece) continue;
      if (piece.startsWith("`")) parent.append(el("code", { textContent: piece.slice(1, -1) }));
      else if (piece.startsWith("**")) parent.append(el("strong", { textContent: piece.slice(2, -2) }));
      else if (piece.startsWith("*") && piece.length > 2) parent.append(el("em", { textContent: piece.slice(1, -1) }));
      else parent.append(piece);
    }
  }

  function resolve(spec, schema) {
    if (schema && schema.$ref) return spec.components.schemas[schema.$ref.split("/").pop()] || {};
    return schema || {};
  }

  function typeOf(spec, schema) {
    schema = resolve(spec, schema);
    if (schema.format === "binary") return "file";
    if (schema.type === "array") return `array of ${typeOf(spec, schema.items)}`;
    if (schema.type === "object" && schema.additionalProperties) return `object of ${typeOf(spec, schema.additionalProperties)}`;
    return schema.type || schema.title || "object";
  }

  function fieldsTable(spec, schema) {
    schema = resolve(spec, schema);
    const rows = Object.entries(schema.properties || {}).concat(
      Object.entries(schema.patternProperties || {}).map(([k, v]) => [`${k} (pattern)`, v]));
    if (!rows.length) return null;
    const body = el("tbody");
    for (const [name, prop] of rows) {
      const p = resolve(spec, prop);
      const notes = [p.description, p.maxLength ? `at most ${p.maxLength} characters` : null].filter(Boolean).join("; ");
      body.append(el("tr", {}, el("td", {}, el("code", { textContent: name })), el("td", { textContent: typeOf(spec, p) }),
        el("td", { textContent: notes })));
    }
    return el("table", {}, el("thead", {}, el("tr", {}, el("th", { textContent: "field" }), el("th", { textContent: "type" }),
      el("th", { textContent: "notes" }))), body);
  }

  function endpoint(spec, path, method, op) {
    const card = el("section", { className: "card endpoint" });
    card.dataset.path = path;
    card.dataset.method = method;
    card.append(el("div", { className: "endpoint-head" },
      el("span", { className: `method ${method}`, textContent: method.toUpperCase() }),
      el("span", { className: "path", textContent: path }),
      el("span", { className: "muted", textContent: op.summary || "" })));
    if (op.description) card.append(markdown(op.description));
    const body = op.requestBody && op.requestBody.content;
    if (body) {
      for (const [type, media] of Object.entries(body)) {
        card.append(el("h3", { textContent: `Request body · ${type}` }));
        const table = fieldsTable(spec, media.schema);
        if (table) card.append(table);
      }
    }
    card.append(el("h3", { textContent: "Responses" }));
    const rows = el("tbody");
    for (const [code, resp] of Object.entries(op.responses || {})) {
      const media = resp.content && resp.content["application/json"];
      const schema = media ? resolve(spec, media.schema) : null;
      const fields = schema && schema.properties ? Object.keys(schema.properties).join(", ") : "";
      rows.append(el("tr", {}, el("td", {}, el("code", { textContent: code })), el("td", { textContent: resp.description || "" }),
        el("td", { textContent: fields })));
    }
    card.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", { textContent: "status" }),
      el("th", { textContent: "meaning" }), el("th", { textContent: "JSON fields" }))), rows));
    return card;
  }

  async function main() {
    const box = document.getElementById("api-description");
    try {
      const r = await fetch("/openapi.json");
      const spec = await r.json();
      document.getElementById("api-title").textContent = `${spec.info.title} API ${spec.info.version}`;
      box.replaceChildren(markdown(spec.info.description || ""));
      const list = document.getElementById("endpoints");
      list.className = "docs-list";
      for (const [path, ops] of Object.entries(spec.paths || {})) {
        for (const [method, op] of Object.entries(ops)) list.append(endpoint(spec, path, method, op));
      }
      document.body.dataset.state = "done";
    } catch (e) {
      box.replaceChildren(el("p", { className: "error", textContent: `Cannot load /openapi.json: ${e.message}` }));
    }
  }

  main();
})();
