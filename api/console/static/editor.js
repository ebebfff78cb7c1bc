/* Editor: journey text on the left, diagram on the right, checked as you type.
 * The diagram's own editing is editor-diagram.js, through window.JourneyEditor.
 *
 * Each typing pause (data-check-delay ms) posts the text to
 * POST /v1/journeys/check; answers to older text are dropped. Every problem
 * gets a marker in the gutter at its line and an entry in the list (click or
 * Enter jumps to the line). Deploy stays disabled until the latest check says
 * ok.
 */
"use strict";

(() => {
  const root = document.getElementById("editor");
  if (!root) return;
  const { api, el } = Console;
  const source = document.getElementById("source");
  const gutter = document.getElementById("gutter");
  const problems = document.getElementById("problems");
  const state = document.getElementById("check-state");
  const deploy = document.getElementById("deploy");
  const diagram = document.getElementById("preview-diagram");
  const idInput = document.getElementById("journey-id");
  const templateSelect = document.getElementById("preview-template");
  const delay = Number(root.dataset.checkDelay || 400);
  const readonly = deploy.dataset.readonly === "true";
  let seq = 0;
  let timer = null;
  let lastOk = false;
  let markers = new Map(); // line -> "error" | "warning"

  function lineHeight() {
    return parseFloat(getComputedStyle(source).lineHeight) || 20;
  }

  function renderGutter() {
    const count = source.value.split("\n").length;
    const rows = [];
    for (let i = 1; i <= count; i++) {
      const kind = markers.get(i);
      rows.push(el("div", { class: kind ? "has-" + kind : null, "data-line": i }, String(i)));
    }
    Console.fill(gutter, ...rows);
    gutter.scrollTop = source.scrollTop;
  }

  function jumpTo(line, column) {
    const lines = source.value.split("\n");
    let pos = 0;
    for (let i = 0; i < Math.min(line - 1, lines.length); i++) pos += lines[i].length + 1;
    pos += Math.max(0, Math.min((column || 1) - 1, (lines[line - 1] || "").length));
    source.focus();
    source.setSelectionRange(pos, pos);
    source.scrollTop = Math.max(0, (line - 1) * lineHeight() - source.clientHeight / 3);
    syncScroll();
  }

  function setState(text, cls) {
    state.textContent = text;
    state.className = cls || "muted";
  }

  function setDeployable(ok) {
    lastOk = ok;
    deploy.disabled = readonly || !ok;
    deploy.title = readonly ? "Your key is read-only (viewer)" : ok ? "" : "Fix the errors first";
  }

  function showProblems(items) {
    markers = new Map();
    for (const p of items) {
      if (!p.line) continue;
      if (markers.get(p.line) !== "error") markers.set(p.line, p.severity === "warning" ? "warning" : "error");
    }
    renderGutter();
    for (const div of gutter.querySelectorAll("div[data-line]")) {
      const here = items.filter((p) => p.line === Number(div.dataset.line));
      if (here.length) div.title = here.map((p) => p.message).join("\n");
    }
    if (!items.length) {
      Console.fill(problems, el("li", { class: "none" }, "No problems."));
      return;
    }
    Console.fill(problems, ...items.map((p) =>
      el("li", {},
        el("button", {
          type: "button",
          class: p.severity === "warning" ? "warning" : "error",
          "data-line": p.line, "data-column": p.column,
          onclick: () => jumpTo(p.line || 1, p.column || 1),
        },
          el("span", { class: "where" }, (p.line || "?") + ":" + (p.column || "?")),
          el("span", { class: "code-id" }, (p.severity === "warning" ? "warning " : "") + (p.code || "")),
          el("span", { class: "message" }, p.message),
          p.hint ? el("span", { class: "hint" }, "hint: " + p.hint) : null))));
  }

  function showTemplates(names) {
    const current = templateSelect.value;
    const known = new Set(names);
    for (const opt of [...templateSelect.options]) if (opt.value && opt.dataset.fromJourney) opt.remove();
    const existing = new Set([...templateSelect.options].map((o) => o.value));
    for (const name of names) {
      if (existing.has(name)) continue;
      const opt = el("option", { value: name, "data-from-journey": "1" }, name);
      templateSelect.insertBefore(opt, templateSelect.options[1] || null);
    }
    if (current && (known.has(current) || existing.has(current))) templateSelect.value = current;
    else if (names.length && !current) templateSelect.value = names[0];
  }

  async function check() {
    const mine = ++seq;
    setDeployable(false);
    setState("Checking…");
    const result = await api("POST", "/v1/journeys/check", { source: source.value });
    if (mine !== seq) return; // the text changed meanwhile; a newer check is coming
    if (!result.ok) {
      setState("Check failed: " + Console.problem(result), "bad");
      return;
    }
    const r = result.data;
    showChecked(r.ok, r.errors, r.svg);
    if (idInput && r.suggested_id) idInput.placeholder = r.suggested_id;
    showTemplates(r.templates || []);
    root.dataset.checked = String(mine);
  }

  /* what a check answered — or a diagram edit, which answers the same */
  function showChecked(ok, items, svg) {
    showProblems(items);
    if (svg) {
      // A redraw replaces every node; the one keyboard focus was on gets it back.
      const active = document.activeElement;
      const focused = active && diagram.contains(active) && active.dataset ? active.dataset.nodeId : null;
      diagram.innerHTML = svg; // drawn by the server's renderer; every text in it is escaped
      const again = focused && diagram.querySelector(`g.node[data-node-id="${CSS.escape(focused)}"]`);
      if (again) { again.setAttribute("tabindex", "0"); again.focus({ preventScroll: true }); }
      diagram.classList.remove("stale");
    } else {
      diagram.classList.add("stale");
    }
    const errors = items.filter((p) => p.severity !== "warning").length;
    const warnings = items.length - errors;
    if (ok) setState("No errors" + (warnings ? " (" + warnings + " warning" + (warnings > 1 ? "s" : "") + ")" : ""), "good");
    else setState(errors + " error" + (errors > 1 ? "s" : ""), "bad");
    setDeployable(ok);
    for (const hook of drawnHooks) hook(Boolean(svg));
  }
  const drawnHooks = [];

  /* The diagram editor (editor-diagram.js) puts the text of an edit here:
     the answer already holds its diagnostics and diagram, so no check. */
  function setText(text, answer) {
    clearTimeout(timer);
    const mine = ++seq; // an older check's answer is dropped
    source.value = text;
    renderGutter();
    colour();
    showChecked(answer.ok, answer.diagnostics, answer.svg);
    root.dataset.checked = String(mine);
  }

  function schedule() {
    clearTimeout(timer);
    ++seq; // a check already under way is of older text: its answer is dropped
    setDeployable(false);
    setState("Typing…");
    timer = setTimeout(check, delay);
  }

  /* ---- syntax colours: the same text drawn in a <pre> behind the textarea
     (whose own text is transparent), re-coloured on every change */
  const highlight = document.querySelector("#highlight code");
  const pre = document.getElementById("highlight");
  const KEYWORDS = new Set(("add after always and api at audience best count coupon day description elif " +
    "else entry event every exit false for goal goto hours if in is journey label limit message messages not " +
    "of on once or out_of_stock pass per quiet reachable reentry remove rfm send split stage tag then timeout " +
    "timezone to true until up user wait when where within").split(" "));
  // a comment, a string (maybe not closed yet), a number or duration, a word
  const TOKEN = /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"?)|(\b\d+(?:\.\d+)?(?:[smhdw]\b|%)?)|([A-Za-z_][A-Za-z0-9_]*)/g;
  const MAX_COLOURED = 100000; // characters; past that the text stays plain (and typing stays quick)

  function colour() {
    if (!highlight) return;
    const text = source.value;
    const parts = [];
    let last = 0;
    if (text.length <= MAX_COLOURED) {
      for (const m of text.matchAll(TOKEN)) {
        if (m.index > last) parts.push(text.slice(last, m.index));
        const cls = m[1] ? "hl-com" : m[2] ? "hl-str" : m[3] ? "hl-num" : KEYWORDS.has(m[4]) ? "hl-kw" : null;
        parts.push(cls ? el("span", { class: cls }, m[0]) : m[0]);
        last = m.index + m[0].length;
      }
    }
    parts.push(text.slice(last) + "\n"); // a last empty line still takes its height
    Console.fill(highlight, ...parts);
    syncScroll();
  }

  function syncScroll() {
    gutter.scrollTop = source.scrollTop;
    if (pre) {
      pre.scrollTop = source.scrollTop;
      pre.scrollLeft = source.scrollLeft;
    }
  }

  source.addEventListener("input", () => { renderGutter(); colour(); schedule(); });
  source.addEventListener("scroll", syncScroll);
  source.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      clearTimeout(timer);
      check();
    }
  });

  deploy.addEventListener("click", async () => {
    if (!lastOk) return;
    deploy.disabled = true;
    setState("Deploying…");
    const body = { source: source.value };
    const fixed = root.dataset.journeyId;
    const chosen = idInput && idInput.value.trim();
    if (fixed) body.id = fixed;
    else if (chosen) body.id = chosen;
    const result = await api("POST", "/v1/journeys", body);
    if (result.ok) {
      const j = result.data.journey;
      Console.toast(result.data.created ? "Deployed " + j.name + " v" + result.data.version : "Unchanged: v" + result.data.version + " is already this text");
      setState("Deployed v" + result.data.version, "good");
      location.assign("/console/journeys/" + encodeURIComponent(j.id));
      return;
    }
    const errs = (result.data && result.data.errors) || [];
    if (errs.length) showProblems(errs.filter((e) => e.line));
    setState("Not deployed: " + Console.problem(result), "bad");
    Console.toast(Console.problem(result), true);
    setDeployable(!errs.length);
  });

  /* ---- template preview */
  (async () => {
    const result = await api("GET", "/v1/templates");
    if (!result.ok) return;
    const existing = new Set([...templateSelect.options].map((o) => o.value));
    for (const t of result.data) if (!existing.has(t.name)) templateSelect.append(el("option", { value: t.name }, t.name));
  })();

  document.getElementById("preview-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = document.getElementById("preview-out");
    const form = event.target;
    const name = form.elements.template.value;
    const who = form.elements.user.value.trim();
    if (!name) { Console.fill(out, el("p", { class: "error" }, "Choose a template.")); return; }
    Console.fill(out, el("p", { class: "muted" }, "Rendering…"));
    const found = await api("GET", "/console/find-users?q=" + encodeURIComponent(who));
    if (!found.ok || !found.data.length) {
      Console.fill(out, el("p", { class: "error" }, "No user has the id or identifier “" + who + "”."));
      return;
    }
    const user = found.data[0];
    const body = form.elements.channel.value ? { channel: form.elements.channel.value } : {};
    const path = "/v1/templates/" + encodeURIComponent(name) + "/preview?user_id=" + encodeURIComponent(user.user_id);
    const result = await api("POST", path, body);
    if (!result.ok) {
      Console.fill(out, el("p", { class: "error" }, Console.problem(result)));
      return;
    }
    const p = result.data;
    Console.fill(out,
      el("p", { class: "muted small" }, p.template + " v" + p.version + " for " + p.user_id + " via " + (p.channel || "default")),
      p.subject ? el("p", {}, el("strong", {}, p.subject)) : null,
      el("div", { class: "preview-body", id: "preview-body" }, p.body));
  });

  window.JourneyEditor = {
    source,
    diagram,
    setText,
    /** the text changed by hand (undo to a text that may not parse) */
    setTyped(text) { source.value = text; renderGutter(); colour(); clearTimeout(timer); check(); },
    onDrawn(hook) { drawnHooks.push(hook); },
    state: setState,
  };

  renderGutter();
  colour();
  check();
})();
