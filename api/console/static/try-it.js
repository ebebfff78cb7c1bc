/* The editor's "Try it" panel: the journey in the text pane, run for a test
   user (or a copy of a real one) on the real interpreter in a time-skipping
   server (POST /v1/journeys/simulate), the timeline shown in the operator's
   words and the diagram marked with the steps the run reached. */
(() => {
  "use strict";
  const form = document.getElementById("try-form");
  if (!form) return;
  const { api, el, fill } = Console;
  const out = document.getElementById("try-out");
  const state = document.getElementById("try-state");

  /* "+2h order_paid amount=120 city=杭州" -> a scripted event */
  function parseEvent(line) {
    const words = line.trim().split(/\s+/);
    if (words.length < 2) throw new Error("write each event as: +2h order_paid [key=value …]");
    const [at, name, ...props] = words;
    const properties = {};
    for (const p of props) {
      const i = p.indexOf("=");
      if (i < 1) throw new Error("properties are key=value: " + p);
      const value = p.slice(i + 1);
      properties[p.slice(0, i)] = value !== "" && !Number.isNaN(Number(value)) ? Number(value) : value;
    }
    return { at, name, properties };
  }

  function mark(hits, cases) {
    for (const g of document.querySelectorAll("#preview-diagram g.node")) {
      const id = g.dataset.nodeId;
      g.classList.remove("reached", "unreached");
      g.removeAttribute("data-hits");
      if (!(id in hits)) continue;
      g.classList.add(hits[id] > 0 ? "reached" : "unreached");
      g.dataset.hits = String(hits[id]);
      const title = g.querySelector("title");
      if (title) title.textContent = title.textContent.replace(/ — reached .*$/, "") +
        " — reached " + hits[id] + " time(s) in " + cases + " run(s)";
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { source: document.getElementById("source").value, for: form.elements.for.value || "30d" };
    if (form.elements.matrix.checked) body.matrix = true;  // once per variant of every split
    try {
      const events = form.elements.events.value.split("\n").filter((l) => l.trim()).map(parseEvent);
      if (events.length) body.events = events;
    } catch (err) {
      fill(state, el("span", { class: "error" }, err.message));
      return;
    }
    const realUser = form.elements.as_user.value.trim();
    if (realUser) {
      body.as_user = realUser;
    } else {
      const identities = {};
      const phone = form.elements.phone.value.trim();
      if (phone) identities.phone = phone;
      const wecom = form.elements.wecom.value.trim();
      if (wecom) identities.wecom_external_userid = wecom;
      const tags = form.elements.tags.value.split(/[,，]/).map((t) => t.trim()).filter(Boolean);
      body.user = { identities, tags };
    }
    fill(state, "Running…");
    fill(out);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await api("POST", "/v1/journeys/simulate", body);
    button.disabled = false;
    if (!result.ok) {
      fill(state, el("span", { class: "error" }, Console.problem(result)));
      return;
    }
    const r = result.data;
    const missed = r.never_reached.length;
    const runs = r.cases.length > 1 ? r.cases.length + " runs (one per variant); " : "";
    fill(state, runs + (missed ? missed + " step(s) never reached (dimmed on the diagram)" : "Every step was reached"));
    fill(out, r.text);
    mark(r.hits, r.cases.length);
  });
})();

/* "Who would enter now": an audience journey's selection, counted and
   sampled without starting anything (POST /v1/journeys/audience/preview). */
(() => {
  "use strict";
  const button = document.getElementById("audience-preview");
  if (!button) return;
  const { api, el, fill, number } = Console;
  const out = document.getElementById("audience-out");
  button.addEventListener("click", async () => {
    fill(out, "Counting…");
    const result = await api("POST", "/v1/journeys/audience/preview", {
      source: document.getElementById("source").value, sample_size: 20,
    });
    if (!result.ok) {
      fill(out, el("span", { class: "error" }, Console.problem(result)));
      return;
    }
    const r = result.data;
    const howMany = r.exact ? number(r.count) : number(r.count) + "–" + number(r.at_most);
    fill(out,
      el("p", { id: "audience-count" }, howMany + " users would enter now (" + r.where + ", " + r.schedule + ")"),
      r.sample.length
        ? el("ul", { class: "audience-sample" }, r.sample.map((m) =>
            el("li", {}, el("a", { href: "/console/users/" + encodeURIComponent(m.user_id) }, m.user_id))))
        : el("p", { class: "muted small" }, "Nobody matches now."));
  });
})();
