/* Journey page: live numbers on the diagram, the node panel, version diffs.
 *
 * The server draws the diagram with a zero in every count element
 * (<tspan class="count count-<key>" data-node-id data-key>); this script polls
 * the stats API and rewrites those numbers in place, so nothing reloads.
 */
"use strict";

(() => {
  const root = document.getElementById("journey");
  if (!root) return;
  const id = root.dataset.journeyId;
  const pollMs = Number(root.dataset.pollMs || 3000);
  // "" = every version together; else the numbers of that one version only
  const version = root.dataset.version || "";
  // an event counted per entered user, next to each variant (?per_entry=)
  const perEntry = root.dataset.perEntry || "";
  const statsQuery = [version ? "version=" + encodeURIComponent(version) : null,
    perEntry ? "per_entry=" + encodeURIComponent(perEntry) : null].filter(Boolean).join("&");
  const { api, el, number, percent } = Console;
  const diagramId = (nodeId) => ({ entry: "__entry__", end: "__end__" })[nodeId] || nodeId;
  const KEYS = ["entered", "waiting", "sent", "suppressed"];

  function setCount(nodeId, key, value) {
    const sel = '.count[data-node-id="' + CSS.escape(nodeId) + '"][data-key="' + CSS.escape(key) + '"]';
    const node = document.querySelector("#diagram " + sel);
    if (!node) return;
    const text = number(value || 0);
    if (node.textContent !== text) {
      node.textContent = text;
      node.classList.add("changed");
      setTimeout(() => node.classList.remove("changed"), 1500);
    }
  }

  function renderVariants(variants, counted) {
    const body = document.querySelector("#variants tbody");
    if (!body) return;
    const per = new Map((counted ? counted.variants : []).map((c) => [c.variant ?? "", c]));
    const rows = variants.length
      ? variants.map((v) =>
          el("tr", { "data-variant": v.variant ?? "" },
            el("th", { scope: "row" }, v.variant ?? "(no split)"),
            el("td", { class: "num" }, number(v.entered)),
            el("td", { class: "num" }, number(v.converted)),
            el("td", { class: "num", "data-key": "conversion_rate" }, percent(v.conversion_rate)),
            el("td", { class: "num", "data-key": "clicks" }, number(v.clicks ?? 0)),
            el("td", { class: "num", "data-key": "click_rate" }, percent(v.click_rate ?? 0)),
            counted ? el("td", { class: "num", "data-key": "events" }, number((per.get(v.variant ?? "") || {}).events)) : null,
            counted ? el("td", { class: "num", "data-key": "per_entry" },
              ((per.get(v.variant ?? "") || {}).per_entry ?? 0).toFixed(2)) : null,
            el("td", {}, v.tests.map((t) =>
              el("div", { class: t.significant ? "good" : "muted" },
                "vs " + t.against + ": " + (t.p_value === null ? "n/a" : "p=" + t.p_value.toFixed(3)) +
                (t.significant ? " (significant)" : ""))))))
      : [el("tr", {}, el("td", { colspan: counted ? 9 : 7, class: "muted" }, "Nobody has entered yet."))];
    Console.fill(body, ...rows);
  }

  /* A big journey's counts are kept and recounted in the background
     (engine/count_cache.py): say how old they are, so lagging numbers are not
     taken for live ones. null: counted for this answer, nothing to say. */
  function ago(seconds) {
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 90 * 60) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function showCountsAge(seconds) {
    const note = document.getElementById("counts-age");
    if (!note) return;
    const kept = seconds !== null && seconds !== undefined;
    note.hidden = !kept;
    note.textContent = kept
      ? "Counts as of " + ago(seconds) + ": this journey is big, so its numbers are recounted in the background."
      : "";
  }

  async function poll() {
    const result = await api("GET", "/v1/journeys/" + encodeURIComponent(id) + "/stats" + (statsQuery ? "?" + statsQuery : ""));
    const state = document.getElementById("live-state");
    if (result.ok) {
      const s = result.data;
      for (const row of s.nodes) {
        for (const key of KEYS) setCount(diagramId(row.node_id), key, row[key]);
      }
      const summary = { ...s.summary, conversion_rate: s.goal.conversion_rate };
      for (const dd of document.querySelectorAll("[data-summary]")) {
        const key = dd.dataset.summary;
        dd.textContent = key === "conversion_rate" ? percent(summary[key]) : number(summary[key]);
      }
      renderVariants(s.variants, s.per_entry);
      showCountsAge(s.counts_age_seconds);
      if (state) {
        state.textContent = "Live · updated " + new Date().toLocaleTimeString() +
          (s.warnings.length ? " · " + s.warnings.join("; ") : "");
      }
      root.dataset.polls = String(Number(root.dataset.polls || 0) + 1);
    } else if (state) {
      // 503 "counting": a big journey counted for the first time, in the background
      const counting = result.status === 503 && String((result.data || {}).type || "").endsWith("/counting");
      state.textContent = counting
        ? "Counting this journey's numbers for the first time (it is big); they show here in a moment."
        : "Numbers could not be refreshed: " + Console.problem(result);
    }
    setTimeout(poll, document.hidden ? pollMs * 4 : pollMs);
  }

  /* ---- the node panel */
  const panel = document.getElementById("node-panel");
  // a page of who waits / of deliveries; the server says what it is (view.PANEL_LIMIT)
  const panelLimit = () => Number(root.dataset.panelLimit) || 0;

  function panelPath(nodeId, cursorName, cursor) {
    const query = [version ? "version=" + encodeURIComponent(version) : null,
      panelLimit() ? "limit=" + panelLimit() : null,
      cursor ? cursorName + "=" + encodeURIComponent(cursor) : null].filter(Boolean).join("&");
    return "/console/journeys/" + encodeURIComponent(id) + "/nodes/" + encodeURIComponent(nodeId) + (query ? "?" + query : "");
  }

  /* One of the panel's lists, a page at a time (a node 100k runs wait at is
     never listed whole): its heading says how many are listed ("shown" while
     more remain); "More …" asks the next page by its cursor and appends it,
     and is removed on the last page. */
  function pagedList(o) {
    const { key, nodeId } = o;
    let next = o.next;
    let shown = 0;
    const head = el("h3", { class: "small-head", "data-list-head": key });
    const empty = el("p", { class: "muted small" }, o.empty);
    const out = el("p", { class: "small error", "aria-live": "polite", hidden: true });
    const more = el("button", { type: "button", class: "more", "data-more": key }, o.more);
    const section = el("div", { class: "paged", "data-list": key }, head, o.holder, empty, more, out);

    function add(items, cursor) {
      const rows = items.map(o.row);
      o.body.append(...rows);
      shown += rows.length;
      next = cursor || null;
      head.textContent = o.title + " (" + number(shown) + (next ? " shown" : "") + ")";
      o.holder.hidden = shown === 0;
      empty.hidden = shown > 0 || Boolean(next);
      if (!next) more.remove();  // the last page: nothing more to ask for
      return rows;
    }

    let loading = false;
    more.addEventListener("click", async () => {
      if (loading) return;  // not disabled while it loads: a disabled button would drop the keyboard's focus
      loading = true;
      more.setAttribute("aria-busy", "true");
      const result = await api("GET", panelPath(nodeId, key + "_cursor", next));
      loading = false;
      more.removeAttribute("aria-busy");
      if (!result.ok) {
        out.hidden = false;
        Console.fill(out, Console.problem(result));
        return;
      }
      out.hidden = true;
      const rows = add(result.data[key], result.data[key + "_next"]);
      // on the last page the button goes: keyboard users carry on at the first new row
      if (!more.isConnected && rows.length) {
        const link = rows[0].querySelector("a");
        if (link) link.focus();
      }
    });
    add(o.first, next);
    return section;
  }

  function waitingList(p, nodeId) {
    const body = el("ul", { class: "waiting" });
    return pagedList({
      key: "waiting", nodeId, title: "Waiting here now", more: "More waiting users", empty: "Nobody.",
      first: p.waiting, next: p.waiting_next, holder: body, body,
      row: (u) => el("li", {}, el("a", { href: "/console/users/" + encodeURIComponent(u) }, u)),
    });
  }

  function deliveriesList(p, nodeId) {
    const body = el("tbody");
    const table = el("table", { class: "grid deliveries" },
      el("thead", {}, el("tr", {}, ["When", "User", "Channel", "Status"].map((h) => el("th", { scope: "col" }, h)))),
      body);
    return pagedList({
      key: "deliveries", nodeId, title: "Deliveries", more: "More deliveries", empty: "No messages from this step.",
      first: p.deliveries, next: p.deliveries_next, holder: table, body,
      row: (d) => el("tr", { class: "st-" + d.status },
        el("td", {}, new Date(d.at).toLocaleString()),
        el("td", {}, el("a", { href: "/console/users/" + encodeURIComponent(d.user_id) }, d.user_id)),
        el("td", {}, (d.channel || "–") + " " + (d.template || "")),
        el("td", {}, d.status + (d.reason ? " (" + d.reason + ")" : ""))),
    });
  }

  async function openNode(nodeId, g) {
    for (const other of document.querySelectorAll("#diagram .node.selected")) other.classList.remove("selected");
    g.classList.add("selected");
    Console.fill(panel, el("h2", {}, "Step"), el("p", { class: "muted" }, "Loading…"));
    const result = await api("GET", panelPath(nodeId));
    if (!result.ok) {
      Console.fill(panel, el("h2", {}, "Step"), el("p", { class: "error" }, Console.problem(result)));
      return;
    }
    const p = result.data;
    const outcomes = Object.entries(p.outcomes);
    Console.fill(panel,
      el("h2", { "data-node-id": p.node_id }, p.label),
      el("p", { class: "muted small" }, "node " + p.node_id),
      outcomes.length ? el("p", { class: "small" }, outcomes.map(([k, n]) => k + ": " + number(n)).join(" · ")) : null,
      waitingList(p, nodeId),
      deliveriesList(p, nodeId),
      p.split_test ? splitTestPanel(p, nodeId, g) : null,
      p.failed && p.can_replay ? replayControl(p, nodeId, g) : null,
    );
    panel.focus({ preventScroll: true });
  }

  /* A split test: its window, the numbers per variant (so far, or the ones
     it was decided on), the winner and why; operators may pick the winner. */
  function splitTestPanel(p, nodeId, g) {
    const t = p.split_test;
    const metric = t.metric === "goal" ? "the goal" : "doing " + t.event;
    const state = t.winner
      ? "Winner: " + t.winner + " (" + (t.decided_by === "operator" ? "picked by an operator" : "decided by the test") + ")"
      : t.started_at
        ? "Testing on " + t.sample_percent + "% until " + new Date(t.ends_at).toLocaleString() + "; the others wait here"
        : "Not started: the first run here starts the " + t.window_seconds + "s window";
    const rows = Object.entries((t.numbers && t.numbers.variants) || {}).map(([name, v]) =>
      el("tr", { "data-variant": name },
        el("th", { scope: "row" }, name + (name === t.winner ? " ★" : "")),
        el("td", { class: "num" }, number(v.runs)),
        el("td", { class: "num" }, number(v.hits)),
        el("td", { class: "num" }, v.runs ? percent(v.hits / v.runs) : "–")));
    const out = el("p", { class: "small", id: "split-test-result", "aria-live": "polite" });
    const picks = p.can_operate ? Object.keys((t.numbers && t.numbers.variants) || {}).map((name) => {
      const button = el("button", { type: "button", "data-pick": name }, "Pick " + name);
      button.addEventListener("click", async () => {
        if (!window.confirm("Make " + name + " the winner? The runs waiting here, and every later run, take it.")) return;
        const body = { variant: name };
        if (version) body.version = Number(version);
        const path = "/v1/journeys/" + encodeURIComponent(id) + "/split-tests/" + encodeURIComponent(p.node_id) + "/winner";
        const result = await api("PUT", path, body);
        if (!result.ok) {
          Console.fill(out, el("span", { class: "error" }, Console.problem(result)));
          return;
        }
        openNode(nodeId, g);
      });
      return button;
    }) : [];
    return el("div", { class: "split-test" },
      el("h3", { class: "small-head" }, "Split test by " + metric),
      el("p", { class: "small", id: "split-test-state" }, state),
      t.reason ? el("p", { class: "small muted" }, t.reason) : null,
      !t.winner && t.so_far ? el("p", { class: "small muted", id: "split-test-so-far" },
        "If it ended now: " + t.so_far) : null,
      rows.length ? el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ["Variant", "Test runs", "Met the metric", "Rate"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows)) : null,
      picks.length ? el("p", { class: "actions" }, ...picks) : null,
      out);
  }

  /* A step's failed sends (a vendor outage past the retry deadline, a template
     fixed since) sent again with their original keys, after a confirmation. */
  function replayControl(p, nodeId, g) {
    const noun = p.failed === 1 ? "send" : "sends";
    const out = el("p", { class: "small", id: "replay-result", "aria-live": "polite" });
    const button = el("button", { type: "button", class: "danger", id: "replay-failed" },
      "Replay " + number(p.failed) + " failed " + noun);
    button.addEventListener("click", async () => {
      if (!window.confirm("Send the " + number(p.failed) + " failed " + noun + " of this step again? " +
          "Each goes once more, with its original key, if the caps and the user's consent allow it now.")) return;
      button.disabled = true;
      const body = { node_id: p.node_id };
      if (version) body.version = Number(version);
      const result = await api("POST", "/v1/journeys/" + encodeURIComponent(id) + "/deliveries/replay", body);
      if (!result.ok) {
        button.disabled = false;
        Console.fill(out, el("span", { class: "error" }, Console.problem(result)));
        return;
      }
      const r = result.data;
      const parts = [number(r.requested) + " marked for replay: they go within seconds"];
      if (r.capped) parts.push(number(r.capped) + " stopped by a frequency cap now");
      if (r.not_replayable) parts.push(number(r.not_replayable) + " cannot be replayed (recorded before replays)");
      if (r.more) parts.push("more remain: replay again");
      Console.fill(out, parts.join("; ") + ".");
      setTimeout(() => openNode(nodeId, g), 3000);
    });
    return el("div", { class: "replay" }, el("h3", { class: "small-head" }, "Failed sends"), button, out);
  }

  for (const g of document.querySelectorAll("#diagram g.node")) {
    const title = g.querySelector("title");
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-label", "Step: " + (title ? title.textContent : g.dataset.nodeId));
    g.addEventListener("click", () => openNode(g.dataset.nodeId, g));
    g.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        openNode(g.dataset.nodeId, g);
      }
    });
  }

  /* ---- which version's numbers: picking one reloads the page for it */
  const picker = document.getElementById("version-pick");
  if (picker) {
    picker.addEventListener("change", () => {
      const query = [picker.value ? "version=" + encodeURIComponent(picker.value) : null,
        perEntry ? "per_entry=" + encodeURIComponent(perEntry) : null].filter(Boolean).join("&");
      window.location.assign("/console/journeys/" + encodeURIComponent(id) + (query ? "?" + query : ""));
    });
  }

  /* ---- version diff */
  const form = document.getElementById("diff-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = document.getElementById("diff");
      const from = form.elements.from.value;
      const to = form.elements.to.value;
      const path = "/v1/journeys/" + encodeURIComponent(id) + "/diff?from=" + from + "&to=" + to;
      const result = await api("GET", path);
      if (!result.ok) {
        Console.fill(out, el("span", { class: "del" }, Console.problem(result)));
        return;
      }
      const lines = result.data.diff ? result.data.diff.split("\n") : ["(no differences)"];
      Console.fill(out, ...lines.map((line) => {
        const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null;
        return el("span", { class: cls }, line + "\n");
      }));
    });
  }

  /* ---- readouts after a broadcast (or a typed start), per variant */
  const readoutsForm = document.getElementById("readouts-form");
  const broadcastPick = document.getElementById("readouts-broadcast");

  async function loadBroadcasts() {
    const result = await api("GET", "/v1/journeys/" + encodeURIComponent(id) + "/broadcasts?limit=20");
    if (!result.ok || !broadcastPick) return;
    for (const b of result.data) {
      broadcastPick.append(el("option", { value: b.broadcast_id },
        "broadcast " + new Date(b.started_at).toLocaleString() + " (" + number(b.entered) + " entered)"));
    }
  }

  function renderReadouts(readouts) {
    const body = document.querySelector("#readouts tbody");
    const rows = [];
    for (const r of readouts) {
      const when = r.offset + (r.complete ? "" : " (so far)");
      rows.push(el("tr", { class: "readout-total", "data-offset": r.offset },
        el("th", { scope: "row" }, when), el("td", {}, "all"),
        el("td", { class: "num" }, number(r.entered)), el("td", { class: "num" }, number(r.sent)),
        el("td", { class: "num", "data-key": "converted" }, number(r.converted)),
        el("td", { class: "num" }, percent(r.conversion_rate))));
      for (const v of r.variants) {
        rows.push(el("tr", { "data-offset": r.offset, "data-variant": v.variant ?? "" },
          el("td", {}, ""), el("td", {}, v.variant ?? "(no split)"),
          el("td", { class: "num" }, number(v.entered)), el("td", { class: "num" }, number(v.sent)),
          el("td", { class: "num", "data-key": "converted" }, number(v.converted)),
          el("td", { class: "num" }, percent(v.conversion_rate))));
      }
    }
    Console.fill(body, ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No readouts."))]));
  }

  if (readoutsForm) {
    readoutsForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = document.querySelector("#readouts tbody");
      const broadcast = readoutsForm.elements.broadcast.value;
      const start = readoutsForm.elements.start.value;
      if (!broadcast && !start) {
        Console.fill(body, el("tr", {}, el("td", { colspan: 6, class: "error" }, "Pick a broadcast or type a start time.")));
        return;
      }
      const query = [version ? "version=" + encodeURIComponent(version) : null,
        broadcast ? "broadcast=" + encodeURIComponent(broadcast) : "start=" + encodeURIComponent(new Date(start).toISOString()),
        "readouts=" + encodeURIComponent(readoutsForm.elements.readouts.value)].filter(Boolean).join("&");
      const result = await api("GET", "/v1/journeys/" + encodeURIComponent(id) + "/stats?" + query);
      if (!result.ok) {
        Console.fill(body, el("tr", {}, el("td", { colspan: 6, class: "error" }, Console.problem(result))));
        return;
      }
      renderReadouts(result.data.readouts || []);
    });
  }

  loadBroadcasts();
  poll();
})();
