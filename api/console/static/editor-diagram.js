/* Editor: editing on the diagram. The text stays the truth: every change
 * made here is one POST /v1/journeys/edit (the current text, a node id, an
 * operation) whose answer — the new text, its diagnostics, the diagram and
 * the outline of its steps — replaces both panes at once.
 *
 * Select a node (click, or Tab into the diagram and use the arrows) to get
 * a form for its fields; the palette inserts a step of any kind, after the
 * node or at the start of one of its blocks. Undo and redo keep one history
 * for both panes: a diagram edit goes back through the edit endpoint (a
 * restore of the exact lines), typing goes back as text and is re-checked.
 * Forms hand the server journey text (names always quoted, conditions as
 * typed); the server writes it in canonical form.
 */
"use strict";

(() => {
  const ed = window.JourneyEditor;
  if (!ed) return;
  const { api, el, fill } = Console;
  const diagram = ed.diagram;
  const inspector = document.getElementById("inspector");
  const status = document.getElementById("edit-state");
  const undoButton = document.getElementById("undo");
  const redoButton = document.getElementById("redo");
  const ENTRY = "__entry__", END = "__end__";
  const CHANNELS = ["wecom", "wecom_group", "official_account", "miniprogram", "push", "sms", "email", "webhook"];
  const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

  let outline = null, outlineFor = null; // the outline and the text it is of
  let selected = null; // node id
  let selectedLine = 0; // its line, to find it again when an edit renames it
  let clipboard = null; // id of a step cut for moving
  let busy = false;
  const history = [], future = []; // entries {before, after, parses}
  let lastText = ed.source.value, typingEntry = null, typingAt = 0;
  const names = { templates: [], pools: [] };

  /* ---------------------------------------------------------------- text helpers */
  const q = (s) => '"' + String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") + '"';
  const UNITS = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]; // as dsl.durations writes them: no weeks
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    let left = Math.abs(seconds), out = "";
    for (const [unit, size] of UNITS) if (left >= size) { out += Math.floor(left / size) + unit; left %= size; }
    return (seconds < 0 ? "-" : "") + (out || "0s");
  }
  const list = (text) => text.split(/[,，]/).map((t) => t.trim()).filter(Boolean);
  const say = (text, bad) => { status.textContent = text; status.className = bad ? "bad" : "muted"; };

  /* ---------------------------------------------------------------- talking to the server */
  let asking = null; // the outline request under way, and for which text
  async function ensureOutline() {
    const text = ed.source.value;
    if (outline && outlineFor === text) return outline;
    if (!asking || asking.text !== text) asking = { text, answer: api("POST", "/v1/journeys/outline", { source: text }) };
    const r = await asking.answer;
    if (!r.ok) { say(Console.problem(r), true); return null; }
    if (ed.source.value === text) { outline = r.data; outlineFor = text; }
    return r.data;
  }

  /** One edit: its answer replaces text, diagnostics, diagram and outline. */
  async function edit(op, opts = {}) {
    if (busy) return null;
    busy = true;
    say("Saving…");
    try {
      const before = ed.source.value;
      const r = await api("POST", "/v1/journeys/edit", { source: before, edit: op });
      if (!r.ok) { say(Console.problem(r), true); Console.toast(Console.problem(r), true); return null; }
      record(before, r.data.source, true);
      say(opts.done || "Saved");
      await show(r.data, opts);
      return r.data;
    } finally {
      busy = false;
    }
  }

  function show(answer, opts = {}) {
    const old = outline;
    outline = answer.outline; outlineFor = answer.source;
    lastText = answer.source;
    ed.setText(answer.source, answer);
    let id = opts.select !== undefined ? opts.select : selected;
    if (typeof id === "function") id = id(old, answer);
    if (id && id !== ENTRY && id !== END && !stepOf(id)) id = atLine(selectedLine);
    return select(id, { focus: opts.focus !== false, open: opts.open, into: opts.into });
  }

  const stepOf = (id) => outline && outline.steps.find((s) => s.id === id);
  const atLine = (line) => {
    if (!outline || !outline.steps.length) return null;
    const exact = outline.steps.find((s) => s.line === line);
    if (exact) return exact.id;
    const before = outline.steps.filter((s) => s.line < line);
    return (before.length ? before[before.length - 1] : outline.steps[0]).id;
  };
  /** the step an insert made: new to the outline, inside the changed lines */
  const made = (old, answer) => {
    const known = new Set((old ? old.steps : []).map((s) => s.id));
    const [first, last] = answer.changed_lines;
    const inside = answer.outline.steps.filter((s) => s.line >= first && s.line <= last);
    return ((inside.find((s) => !known.has(s.id)) || inside.find((s) => s.kind !== "pass") || {}).id) || null;
  };

  /* ---------------------------------------------------------------- undo / redo, both panes */
  function record(before, after, parses) {
    if (before === after) return;
    history.push({ before, after, parses });
    future.length = 0;
    typingEntry = null;
    buttons();
  }

  ed.source.addEventListener("input", () => {
    const now = Date.now();
    if (typingEntry && typingEntry === history[history.length - 1] && now - typingAt < 1000) {
      typingEntry.after = ed.source.value;
    } else {
      typingEntry = { before: lastText, after: ed.source.value, parses: false };
      history.push(typingEntry);
      future.length = 0;
    }
    typingAt = now;
    lastText = ed.source.value;
    buttons();
  });

  function restoreOp(from, to) {
    const a = from.split("\n"), b = to.split("\n");
    let lead = 0;
    while (lead < a.length && lead < b.length && a[lead] === b[lead]) lead++;
    let tail = 0;
    while (tail < a.length - lead && tail < b.length - lead && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
    return { op: "restore_lines", start: lead, expect: a.slice(lead, a.length - tail), lines: b.slice(lead, b.length - tail) };
  }

  /** Undo (back) or redo the last entry: a diagram edit's texts both parse,
      so it goes back through the edit endpoint; typing is put back as text. */
  async function travel(back) {
    const [stack, other] = back ? [history, future] : [future, history];
    const entry = stack[stack.length - 1];
    if (!entry || busy) return;
    const [from, to] = back ? [entry.after, entry.before] : [entry.before, entry.after];
    if (ed.source.value !== from) return; // never overwrite what history does not know
    other.push(stack.pop());
    typingEntry = null;
    buttons();
    if (entry.parses && !from.startsWith("\ufeff")) {
      busy = true;
      let r;
      try {
        r = await api("POST", "/v1/journeys/edit", { source: from, edit: restoreOp(from, to) });
      } finally {
        busy = false;
      }
      if (r.ok) { say(back ? "Undone" : "Redone"); await show(r.data, { focus: false }); return; }
    }
    lastText = to;
    outline = null;
    ed.setTyped(to);
    say(back ? "Undone" : "Redone");
  }
  const undo = () => travel(true);
  const redo = () => travel(false);
  function buttons() { undoButton.disabled = !history.length; redoButton.disabled = !future.length; }
  undoButton.addEventListener("click", undo);
  redoButton.addEventListener("click", redo);

  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key !== "z" && key !== "y") return;
    if (event.target.closest && event.target.closest("#inspector input, #inspector textarea")) return; // the field's own undo
    event.preventDefault();
    if (key === "y" || event.shiftKey) redo(); else undo();
  });

  /* ---------------------------------------------------------------- the diagram's nodes */
  function nodes() { return [...diagram.querySelectorAll("g.node[data-node-id]")]; }

  function decorate() {
    const all = nodes();
    const current = all.some((g) => g.dataset.nodeId === selected) ? selected : all.length && all[0].dataset.nodeId;
    for (const g of all) {
      const id = g.dataset.nodeId;
      const title = g.querySelector("title");
      g.setAttribute("tabindex", id === current ? "0" : "-1"); // one tab stop; the arrows move inside
      g.setAttribute("role", "button");
      g.setAttribute("aria-label", (id === ENTRY ? "Entry: " : id === END ? "End: " : "Step: ") + (title ? title.textContent : id));
      g.classList.toggle("selected", id === selected);
      g.classList.toggle("cut", id === clipboard);
    }
  }
  ed.onDrawn(decorate);

  function focusNode(id) {
    const g = diagram.querySelector(`g.node[data-node-id="${CSS.escape(id)}"]`);
    if (g) { g.focus({ preventScroll: true }); g.scrollIntoView({ block: "nearest", inline: "nearest" }); }
  }

  diagram.addEventListener("click", (event) => {
    const g = event.target.closest("g.node[data-node-id]");
    if (g) select(g.dataset.nodeId, { focus: true });
  });

  diagram.addEventListener("keydown", (event) => {
    const g = event.target.closest("g.node[data-node-id]");
    if (!g) return;
    const id = g.dataset.nodeId, all = nodes(), i = all.indexOf(g);
    const step = !event.altKey && ({ ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 })[event.key];
    const ctrl = event.ctrlKey || event.metaKey;
    const to = (node) => node && select(node.dataset.nodeId, { focus: true });
    if (step) to(all[i + step]);
    else if (event.key === "Home") to(all[0]);
    else if (event.key === "End") to(all[all.length - 1]);
    else if (event.key === "Enter" || event.key === "F2" || event.key === " ") select(id, { into: true });
    else if (event.key === "Delete" || event.key === "Backspace") removeStep(id);
    else if (event.key === "Insert" || event.key === "+" || (event.key === "a" && !ctrl)) {
      select(id).then(() => palette(id === ENTRY ? { parent: null, block: "steps" } : { after: id }));
    }
    else if (event.altKey && event.key === "ArrowUp") moveBy(id, -1);
    else if (event.altKey && event.key === "ArrowDown") moveBy(id, 1);
    else if (ctrl && event.key.toLowerCase() === "x") cut(id);
    else if (ctrl && event.key.toLowerCase() === "v") paste({ after: id });
    else if (event.key === "Escape") select(null);
    else return;
    event.preventDefault();
  });

  inspector.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && selected) { event.preventDefault(); focusNode(selected); }
  });

  async function select(id, opts = {}) {
    selected = id || null;
    const s = stepOf(selected);
    selectedLine = s ? s.line : 0;
    decorate();
    if (opts.focus && selected) focusNode(selected);
    if (!selected) { inspector.hidden = true; fill(inspector); return; }
    if (opts.open === false) return;
    const mine = ++selecting;
    await ensureOutline();
    if (mine !== selecting) return; // a later selection draws its own form
    // Selected before the first outline came (a slow server): its line was
    // unknown, and a save then put the selection on the first step.
    const known = stepOf(selected);
    if (known) selectedLine = known.line;
    render(opts.into);
  }
  let selecting = 0;

  /* ---------------------------------------------------------------- the inspector */
  function render(into) {
    inspector.hidden = false;
    if (selected === ENTRY) headerForm();
    else if (selected === END) fill(inspector, el("h2", {}, "End"), el("p", { class: "muted" }, "Where every path finishes. Select a step to change it."));
    else {
      const s = stepOf(selected);
      if (!s) { fill(inspector, el("p", { class: "muted" }, "This step is not in the text any more.")); return; }
      stepForm(s);
    }
    if (into) { const first = inspector.querySelector("input, select, textarea, button"); if (first) first.focus(); }
  }

  let fields = 0;
  /** A labelled control (a label for= its control, so its name is the label alone). */
  function field(label, control) {
    const target = control.matches("input, select, textarea") ? control : control.querySelector("input, select, textarea");
    target.id = target.id || "ed-field-" + ++fields;
    return el("div", { class: "field" }, el("label", { for: target.id }, label), control);
  }
  const input = (name, value, attrs = {}) => el("input", { name, value: value === null || value === undefined ? "" : value, autocomplete: "off", ...attrs });
  function select_(name, options, value) {
    const s = el("select", { name }, options.map(([v, t]) => el("option", { value: v }, t)));
    s.value = value; return s;
  }
  const button = (text, onclick, attrs = {}) => el("button", { type: "button", onclick, ...attrs }, text);
  const values = (form) => Object.fromEntries(new FormData(form).entries());

  function condInput(name, value) {
    const text = input(name, value, { size: 34, class: "cond", placeholder: 'tag vip and user.city == "上海"' });
    const kind = select_("", [["tag", "has tag"], ["not tag", "has not tag"], ["attr", "attribute"], ["stage", "stage is"],
      ["rfm", "RFM layer"], ["count", "did event"], ["reachable", "reachable on"]], "tag");
    const what = input("", "", { size: 14, placeholder: "tag / field / event", "aria-label": "what" });
    const how = input("", "", { size: 10, placeholder: "== value / >= 2", "aria-label": "compared with" });
    const join = select_("", [["and", "and"], ["or", "or"]], "and");
    const add = button("Add", () => {
      const w = what.value.trim(), h = how.value.trim();
      if (!w) return;
      const part = {
        tag: "tag " + q(w), "not tag": "not tag " + q(w), stage: "stage in [" + list(w).join(", ") + "]",
        rfm: "rfm is " + w, reachable: "reachable " + w,
        attr: "user." + w + " " + (h || "== true"), count: "count " + q(w) + " " + (h || ">= 1"),
      }[kind.value];
      text.value = text.value.trim() ? text.value.trim() + " " + join.value + " " + part : part;
      what.value = how.value = "";
    });
    return el("span", { class: "cond-builder" }, text,
      el("span", { class: "builder", role: "group", "aria-label": "Build a condition" }, join, kind, what, how, add));
  }

  const STEP_WORDS = {
    send: "Send a message", coupon: "Issue a coupon", tag: "Tag", wait: "Wait", wait_until: "Wait until a time",
    wait_date: "Wait until a date (user attribute)", wait_event_time: "Wait until a time in the event",
    wait_event: "Wait for an event", if: "If / else", split: "Split (A/B)", label: "Label", goto: "Go to a label",
    exit: "Exit", pass: "Nothing (pass)",
  };

  function stepForm(s) {
    const form = el("form", { class: "step-form", "aria-label": "Fields of " + s.kind });
    const st = s.step;
    const parts = fieldsOf(s, st, form);
    form.append(...parts.fields, el("div", { class: "actions" },
      parts.compose ? el("button", { type: "submit", class: "primary" }, "Save") : null,
      button("Delete step", () => removeStep(s.id), { class: "danger" }),
      button("Move up", () => moveBy(s.id, -1)), button("Move down", () => moveBy(s.id, 1)),
      button(clipboard === s.id ? "Cut (paste on another step)" : "Cut to move", () => cut(s.id)),
      clipboard && clipboard !== s.id ? button("Paste after this", () => paste({ after: s.id })) : null));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!parts.compose) return;
      const text = parts.compose(values(form), form);
      if (text) edit({ op: "replace_step", node: s.id, text });
    });
    fill(inspector, el("h2", {}, STEP_WORDS[s.kind] || s.kind, el("span", { class: "muted small" }, "  line " + s.line)),
      form, blocksOf(s), paletteBox({ after: s.id }, "Insert after this step"));
  }

  function fieldsOf(s, st, form) {
    switch (s.kind) {
      case "send": {
        const channels = input("channels", st.channels.join(", "), { size: 30, required: true });
        const chips = CHANNELS.map((c) => button(c, () => {
          const now = list(channels.value).filter((x) => x !== c);
          channels.value = [...now, c].join(", ");
        }, { class: "chip", title: "Add " + c + " at the end" }));
        const capped = st.when_capped ? st.when_capped.mode : "";
        return {
          fields: [
            field("Channels (several: the first the user is reachable on, in this order)", channels),
            el("div", { class: "chips", role: "group", "aria-label": "Add a channel" }, chips),
            field("Template", input("template", st.template, { list: "dl-templates", required: true })),
            field("When a frequency cap stops it", select_("capped", [["", "as the journey says"], ["skip", "skip it"], ["defer", "defer it, up to"]], capped)),
            field("Defer up to", input("defer", st.when_capped ? duration(st.when_capped.max_delay_seconds) : "", { size: 8, placeholder: "12h" })),
          ],
          compose: (v) => {
            const chs = list(v.channels);
            const unknown = chs.filter((c) => !CHANNELS.includes(c));
            if (!chs.length || unknown.length) { say("Channels are: " + CHANNELS.join(", "), true); return null; }
            const head = chs.length > 1 ? "send best of " + chs.join(", ") : "send " + chs[0];
            const cap = v.capped === "skip" ? " on capped skip" : v.capped === "defer" ? " on capped defer up to " + v.defer : "";
            return head + " " + q(v.template) + cap;
          },
        };
      }
      case "coupon":
        return { fields: [field("Coupon pool", input("pool", st.pool, { list: "dl-pools", required: true }))],
          compose: (v) => "coupon " + q(v.pool) + (st.out_of_stock ? "\n  on out_of_stock: pass" : "") };
      case "tag":
        return {
          fields: [field("Tags (comma between)", input("tags", st.tags.join(", "), { size: 30, required: true })),
            field("Action", select_("action", [["add", "add"], ["remove", "remove"]], st.action))],
          compose: (v) => "tag " + v.action + " " + list(v.tags).map(q).join(", "),
        };
      case "wait":
        return { fields: [field("Wait for", input("duration", duration(st.seconds), { size: 10, required: true, placeholder: "1d, 2h30m, 1w" }))],
          compose: (v) => "wait " + v.duration.replace(/\s+/g, "") };
      case "wait_until":
        return {
          fields: [field("Day", select_("weekday", [["", "the next day it comes"], ...WEEKDAYS.map((d, i) => [String(i), d])], st.weekday === null ? "" : String(st.weekday))),
            field("Time", input("time", st.time, { type: "time", required: true }))],
          compose: (v) => "wait until " + (v.weekday ? WEEKDAYS[Number(v.weekday)] + " " : "") + v.time,
        };
      case "wait_date":
      case "wait_event_time": {
        const of = s.kind === "wait_date" ? "user." : "event.";
        const name = s.kind === "wait_date" ? st.attribute : st.field;
        return {
          fields: [field(s.kind === "wait_date" ? "User attribute (a date)" : "Event property (a date or time)", input("name", name, { required: true })),
            field("Before (-) or after (+)", input("offset", st.offset_seconds ? (st.offset_seconds > 0 ? "+" : "") + duration(st.offset_seconds) : "", { size: 8, placeholder: "-7d" })),
            field("At (time, optional)", input("time", st.time, { type: "time" }))],
          compose: (v) => {
            const off = v.offset.trim().replace(/\s+/g, "");
            const sign = off.startsWith("-") ? " - " : " + ";
            return "wait until " + of + v.name.trim() + (off ? sign + off.replace(/^[-+]/, "") : "") + (v.time ? " at " + v.time : "");
          },
        };
      }
      case "wait_event":
        return {
          fields: [field("Event", input("event", st.event, { required: true })), field("Where (event properties)", condInput("where", s.conds[0])),
            field("Up to (empty: no time limit)", input("timeout", duration(st.timeout_seconds), { size: 8, placeholder: "3d" }))],
          compose: (v) => "wait for event " + q(v.event) + (v.where.trim() ? " where " + v.where.trim() : "") +
            (v.timeout.trim() ? " up to " + v.timeout.trim() : "") + (st.on_event.length || st.on_timeout.length ? ":" : "") +
            (st.on_event.length ? "\n  on event: pass" : "") + (st.on_timeout.length ? "\n  on timeout: pass" : ""),
        };
      case "if":
        return {
          fields: s.conds.map((c, i) => field(i ? "Else if" : "If", condInput("cond" + i, c))),
          compose: (v) => s.conds.map((_, i) => (i ? "else if " : "if ") + v["cond" + i].trim() + ":\n  pass").join("\n") +
            (st.else_steps ? "\nelse:\n  pass" : ""),
        };
      case "split": {
        const total = el("output", { class: "total" });
        const rows = st.variants.map((v, i) => el("div", { class: "variant" },
          field("Variant", input("name" + i, v.name, { size: 10, required: true })),
          field("%", input("pct" + i, v.percent, { type: "number", min: 0, max: 100, step: "any", size: 4, required: true }))));
        const sum = () => { let t = 0; st.variants.forEach((_, i) => { t += Number(form.elements["pct" + i].value || 0); }); total.value = "Total " + t + "%" + (Math.abs(t - 100) > 1e-9 ? " — must be 100%" : ""); return t; };
        form.addEventListener("input", sum);
        setTimeout(sum);
        const t = st.test || {};
        const test = el("fieldset", {}, el("legend", {}, "Test first, then send everyone the winner"),
          el("label", { class: "check" }, el("input", { type: "checkbox", name: "test", checked: Boolean(st.test) }), "a test"),
          field("Sample %", input("sample", t.sample_percent, { type: "number", min: 0, max: 100, step: "any", size: 4 })),
          field("For", input("window", duration(t.window_seconds), { size: 6, placeholder: "6h" })),
          field("Won by", select_("metric", [["goal", "the goal"], ["event", "an event"]], t.metric || "goal")),
          field("Event", input("metric_event", t.event, { size: 12 })),
          field("Without a winner", select_("otherwise", [["", "the first variant"], ...st.variants.map((x) => [x.name, x.name])], t.otherwise || "")));
        return {
          fields: [...rows, total, test],
          compose: (v) => {
            if (Math.abs(sum() - 100) > 1e-9) { say("The percentages must add up to 100", true); return null; }
            const head = v.test ? "split test " + v.sample + "% for " + v.window + " by " + (v.metric === "goal" ? "goal" : "event " + q(v.metric_event)) : "split";
            return head + ":\n" + st.variants.map((x, i) => "  " + v["pct" + i] + "% " + q(v["name" + i]) + (x.steps.length ? ": pass" : "")).join("\n") +
              (v.test && v.otherwise ? "\n  otherwise: " + q(v.otherwise) : "");
          },
        };
      }
      case "label":
        return { fields: [field("Label name (gotos to it follow)", input("name", st.name, { required: true }))], compose: (v) => "label " + q(v.name) };
      case "goto": {
        const labels = outline.steps.filter((x) => x.kind === "label").map((x) => [x.step.name, x.step.name]);
        return { fields: [field("Go to", select_("label", labels.length ? labels : [[st.label, st.label]], st.label))], compose: (v) => "goto " + q(v.label) };
      }
      default:
        return { fields: [el("p", { class: "muted" }, "This step has nothing to set.")], compose: null };
    }
  }

  /* the selected step's blocks: insert at their start, delete them; add more */
  function blocksOf(s) {
    const box = el("div", { class: "blocks" });
    const words = (b) => b === "out_of_stock" ? "on out_of_stock" : b === "on_event" ? "on event" : b === "on_timeout" ? "on timeout"
      : b === "else" ? "else" : b.startsWith("branch:") ? (b === "branch:0" ? "if" : "else if #" + b.slice(7)) : b.replace("variant:", "variant ");
    for (const b of s.blocks) {
      const inside = outline.steps.filter((x) => x.parent === s.id && x.block === b);
      const real = inside.filter((x) => x.kind !== "pass").length;
      box.append(el("div", { class: "block-row" }, el("span", {}, words(b) + " (" + real + " step" + (real === 1 ? "" : "s") + ")"),
        button("Insert at start", () => palette({ parent: s.id, block: b })),
        clipboard ? button("Paste at start", () => paste({ parent: s.id, block: b })) : null,
        button("Delete branch", () => removeBranch(s, b, real), { class: "danger" })));
    }
    const add = [];
    const st = s.step;
    if (s.kind === "if") {
      add.push(button("Add else if", () => {
        const cond = prompt("Condition of the new else if (e.g. tag vip):");
        if (cond) edit({ op: "add_branch", node: s.id, branch: "else_if", cond });
      }));
      if (!st.else_steps) add.push(button("Add else", () => edit({ op: "add_branch", node: s.id, branch: "else" })));
    }
    if (s.kind === "split") add.push(button("Add variant", () => {
      const name = prompt("Name of the new variant:");
      const percent = name && Number(prompt("Its percent (taken from the largest variant):", "10"));
      if (name && percent) edit({ op: "add_branch", node: s.id, branch: "variant", name, percent });
    }));
    if (s.kind === "coupon" && !st.out_of_stock) add.push(button("Add on out_of_stock", () => edit({ op: "add_branch", node: s.id, branch: "out_of_stock" })));
    if (s.kind === "wait_event") {
      if (!st.on_event.length) add.push(button("Add on event", () => edit({ op: "add_branch", node: s.id, branch: "on_event" })));
      if (!st.on_timeout.length) add.push(button("Add on timeout", () => edit({ op: "add_branch", node: s.id, branch: "on_timeout" })));
    }
    if (add.length) box.append(el("div", { class: "actions" }, add));
    return s.blocks.length || add.length ? el("section", { "aria-label": "Branches" }, el("h3", {}, "Branches"), box) : null;
  }

  /* ---------------------------------------------------------------- the palette */
  function defaults() {
    const labels = outline ? outline.steps.filter((x) => x.kind === "label").map((x) => x.step.name) : [];
    let n = labels.length + 1;
    while (labels.includes("label_" + n)) n++;
    return [
      ["send", "Send", "send sms " + q(names.templates[0] || "template")],
      ["coupon", "Coupon", "coupon " + q(names.pools[0] || "coupon_pool")],
      ["tag", "Tag", "tag add " + q("new_tag")],
      ["wait", "Wait", "wait 1d"],
      ["wait_until", "Wait until", "wait until 10:00"],
      ["wait_date", "Wait for a date", "wait until user.birthday at 10:00"],
      ["wait_event", "Wait for event", "wait for event order_paid up to 1d:\n  on event: pass\n  on timeout: pass"],
      ["if", "If / else", "if tag vip:\n  pass\nelse:\n  pass"],
      ["split", "Split A/B", "split:\n  50% A: pass\n  50% B: pass"],
      ["label", "Label", "label " + q("label_" + n)],
      ["goto", "Go to", labels.length ? "goto " + q(labels[0]) : null],
      ["exit", "Exit", "exit"],
    ];
  }

  function paletteBox(position, title) {
    const group = el("div", { class: "palette", role: "group", "aria-label": title },
      defaults().map(([kind, word, text]) => button(word, () => insert(position, text), { "data-kind": kind, disabled: !text })));
    return el("section", { class: "palette-box" }, el("h3", {}, title), group);
  }

  /** Show the palette for a position and focus its first button. */
  async function palette(position) {
    await ensureOutline();
    const title = position.after ? "Insert after this step" : position.parent ? "Insert at the start of " + position.block : "Insert at the start of the journey";
    inspector.hidden = false;
    const box = paletteBox(position, title);
    const old = inspector.querySelector(".palette-box");
    if (old) old.replaceWith(box); else inspector.append(box);
    box.querySelector("button:not([disabled])").focus();
  }

  const insert = (position, text) => edit({ op: "insert_step", position, text }, { select: made, into: true, done: "Inserted" });

  /* ---------------------------------------------------------------- delete, move */
  function holding(id) {
    const inside = new Set([id]);
    let count = 0;
    for (const x of outline.steps) if (inside.has(x.parent)) { inside.add(x.id); if (x.kind !== "pass") count++; }
    return count;
  }

  async function removeStep(id) {
    if (id === ENTRY || id === END || !(await ensureOutline())) return;
    const s = stepOf(id);
    if (!s) return;
    const n = holding(id);
    const siblings = outline.steps.filter((x) => x.parent === s.parent && x.block === s.block);
    const i = siblings.indexOf(s);
    const next = siblings[i - 1] || siblings[i + 1] || (s.parent ? stepOf(s.parent) : null);
    const op = { op: "delete_step", node: id };
    if (n && !confirm("Delete this step and the " + n + " step" + (n > 1 ? "s" : "") + " inside it?")) return;
    if (n) op.force = true;
    selectedLine = next ? next.line : 0;
    await edit(op, { select: next ? next.id : null, done: "Deleted" });
  }

  async function removeBranch(s, block, real) {
    if (real && !confirm("Delete this branch and the " + real + " step" + (real > 1 ? "s" : "") + " in it?")) return;
    await edit({ op: "delete_branch", node: s.id, block, force: real > 0 }, { done: "Branch deleted" });
  }

  async function moveBy(id, by) {
    if (!(await ensureOutline())) return;
    const s = stepOf(id);
    if (!s) return;
    const siblings = outline.steps.filter((x) => x.parent === s.parent && x.block === s.block);
    const i = siblings.indexOf(s), to = i + by;
    if (to < 0 || to >= siblings.length) { say("It is already at the " + (by < 0 ? "top" : "bottom") + " of its block"); return; }
    const position = by > 0 ? { after: siblings[to].id } : to === 0 ? { parent: s.parent, block: s.block } : { after: siblings[to - 1].id };
    await edit({ op: "move_step", node: id, position }, { select: id, done: "Moved" });
  }

  function cut(id) {
    if (id === ENTRY || id === END) return;
    clipboard = clipboard === id ? null : id;
    decorate();
    say(clipboard ? "Cut: select where it goes and paste (Ctrl+V)" : "");
    if (selected) render();
  }

  async function paste(position) {
    if (!clipboard) return;
    const node = clipboard;
    if (position.after === ENTRY) position = { parent: null, block: "steps" };
    const done = await edit({ op: "move_step", node, position }, { select: node, done: "Moved" });
    if (done) clipboard = null;
    decorate();
  }

  /* ---------------------------------------------------------------- the header */
  async function headerForm() {
    if (!(await ensureOutline())) return;
    const j = outline.journey, lines = outline.header_lines, conds = outline.header_conds;
    const e = j.entry, sched = e.schedule || { every: "day", time: "10:00" };
    const goal = j.goal || {};
    const group = (legend, ...items) => el("fieldset", { "data-group": legend }, el("legend", {}, legend), items);
    const form = el("form", { class: "header-form", "aria-label": "Journey settings" },
      group("Journey", field("Name", input("name", j.name, { required: true, size: 30 })),
        field("Description", input("description", j.description, { size: 40 }))),
      group("Who enters",
        field("Entry", select_("entry", [["event", "when the user does an event"], ["audience", "a tag audience, on a schedule"], ["api", "through the API"]], e.kind)),
        field("Entry event", input("entry_event", e.event, { "data-for": "event" })),
        el("span", { "data-for": "event audience" }, field("Entry condition", condInput("entry_where", conds.entry[0]))),
        el("span", { "data-for": "audience" },
          field("Schedule", select_("every", [["day", "every day"], ["week", "every week"], ["once", "once"]], sched.every)),
          field("Weekday", select_("weekday", WEEKDAYS.map((d, i) => [String(i), d]), String(sched.weekday || 0))),
          field("Date", input("date", sched.date, { type: "date" })),
          field("At", input("at", sched.time, { type: "time" }))),
        field("Re-entry", select_("reentry", [["once", "once"], ["always", "always"], ["after", "again after"]], j.reentry.mode)),
        field("Again after", input("cooldown", duration(j.reentry.cooldown_seconds), { size: 8, placeholder: "30d" }))),
      group("Goal and exits",
        field("Goal event (empty: none)", input("goal", goal.event, {})),
        field("Within", input("goal_within", duration(goal.within_seconds), { size: 8 })),
        field("Goal condition", condInput("goal_where", conds.goal[0])),
        el("label", { class: "check" }, el("input", { type: "checkbox", name: "goal_exit", checked: Boolean(goal.exit_on_goal) }), "exit when reached"),
        field("Exit when (one per line: event unsubscribed, tag blacklisted…)", el("textarea", { name: "exits", rows: 3, cols: 40 }, (lines.exits || []).map((l) => l.replace(/^exit when /, "")).join("\n")))),
      group("Sending",
        field("Timezone", input("timezone", j.timezone)),
        field("Quiet hours from", input("quiet_from", j.quiet_hours && j.quiet_hours.start, { type: "time" })),
        field("to", input("quiet_to", j.quiet_hours && j.quiet_hours.end, { type: "time" })),
        field("At most … messages", input("limit", j.message_limit && j.message_limit.count, { type: "number", min: 1, size: 4 })),
        field("per", input("per", j.message_limit && (j.message_limit.calendar || duration(j.message_limit.window_seconds)), { size: 6, placeholder: "1d or day" })),
        field("When a cap stops a send", select_("capped", [["", "skip it (default)"], ["skip", "skip it (said)"], ["defer", "defer it, up to"]], j.when_capped ? j.when_capped.mode : "")),
        field("Defer up to", input("defer", j.when_capped ? duration(j.when_capped.max_delay_seconds) : "", { size: 8 })),
        field("Priority over other journeys (1 first … 10; empty: none)", input("priority", j.priority, { type: "number", min: 1, max: 10, size: 4 }))),
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary" }, "Save settings")));
    const entryKind = () => {
      for (const x of form.querySelectorAll("[data-for]")) x.closest(".field, span[data-for]").hidden = !x.dataset.for.split(" ").includes(form.elements.entry.value);
    };
    form.elements.entry.addEventListener("change", entryKind);
    entryKind();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const v = values(form);
      const where = (c, word = " where ") => (c.trim() ? word + c.trim() : "");
      const ops = [];
      const want = {
        entry: v.entry === "api" ? "entry api" : v.entry === "event" ? "entry event " + q(v.entry_event) + where(v.entry_where)
          : "entry audience" + where(v.entry_where) + " " + (v.every === "day" ? "every day at " + v.at : v.every === "week" ? "every " + WEEKDAYS[Number(v.weekday)] + " at " + v.at : "once at " + v.date + " " + v.at),
        reentry: "reentry " + (v.reentry === "after" ? "after " + v.cooldown : v.reentry),
        goal: v.goal.trim() ? "goal event " + q(v.goal) + (v.goal_within ? " within " + v.goal_within : "") + where(v.goal_where) + (v.goal_exit ? " then exit" : "") : "",
        exits: v.exits.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => "exit when " + l).join("\n"),
        timezone: "timezone " + q(v.timezone),
        quiet_hours: v.quiet_from && v.quiet_to ? "quiet hours " + v.quiet_from + "-" + v.quiet_to : "",
        message_limit: v.limit ? "limit " + v.limit + " messages per " + (v.per || "1d") : "",
        when_capped: v.capped === "skip" ? "on capped skip" : v.capped === "defer" ? "on capped defer up to " + v.defer : "",
      };
      if (String(v.priority || "") !== String(j.priority || "")) ops.push({ op: "set_header", field: "priority", value: v.priority ? Number(v.priority) : null });
      if (v.name !== j.name) ops.push({ op: "set_header", field: "name", value: v.name });
      if ((v.description || null) !== (j.description || null)) ops.push({ op: "set_header", field: "description", value: v.description || null });
      for (const [k, text] of Object.entries(want)) if (text !== (lines[k] || []).join("\n")) ops.push({ op: "set_header", field: k, text });
      if (!ops.length) { say("Nothing changed"); return; }
      await chain(ops);
    });
    fill(inspector, el("h2", {}, "Journey settings"), form, paletteBox({ parent: null, block: "steps" }, "Insert at the start of the journey"));
  }

  /** Several edits as one step of history (a header form's fields). */
  async function chain(ops) {
    const start = ed.source.value, depth = history.length;
    let answer = null;
    for (const op of ops) {
      answer = await edit(op, { select: ENTRY, open: false, focus: false });
      if (!answer) break;
    }
    if (history.length > depth + 1) history.splice(depth, history.length - depth, { before: start, after: ed.source.value, parses: true });
    buttons();
    if (answer) { say("Settings saved"); select(ENTRY, { focus: true }); }
  }

  document.getElementById("header-edit").addEventListener("click", () => select(ENTRY, { into: true }));

  /* ---------------------------------------------------------------- names for the forms */
  (async () => {
    const [t, p] = await Promise.all([api("GET", "/v1/templates"), api("GET", "/v1/pools")]);
    names.templates = t.ok ? t.data.map((x) => x.name) : [];
    names.pools = p.ok ? p.data.map((x) => x.name) : [];
    document.body.append(
      el("datalist", { id: "dl-templates" }, names.templates.map((n) => el("option", { value: n }))),
      el("datalist", { id: "dl-pools" }, names.pools.map((n) => el("option", { value: n }))));
  })();

  buttons();
})();
