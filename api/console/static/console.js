/* journeys console: shared helpers (no dependencies, no build step).
 *
 * Calls to /v1 carry the key cookie (same origin) plus the console header;
 * the API accepts the cookie only with that header, which another site's
 * page cannot add (see api/console/auth.py).
 */
"use strict";

const Console = (() => {
  const header = document.body.dataset.consoleHeader || "X-Journeys-Console";

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    headers[header] = "1";
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      return { ok: false, status: 0, data: { detail: "the server cannot be reached" } };
    }
    if (response.status === 401) {
      location.assign("/console/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    let data = null;
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = { detail: text }; }
    return { ok: response.ok, status: response.status, data };
  }

  /** el("td", {class: "num"}, "12") — text children are never parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Replace a node's children; null/undefined entries are skipped (the DOM's
      replaceChildren would print them as "null"). */
  function fill(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  function toast(message, bad) {
    const box = document.getElementById("toast");
    if (!box) return;
    const msg = el("div", { class: bad ? "msg bad" : "msg" }, message);
    box.append(msg);
    setTimeout(() => msg.remove(), bad ? 8000 : 4000);
  }

  function problem(result) {
    const d = result.data || {};
    return d.detail || d.title || "request failed (" + result.status + ")";
  }

  const fmt = new Intl.NumberFormat("en-US");
  const number = (n) => (n === null || n === undefined ? "–" : fmt.format(n));
  const percent = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%");

  /* Pause / resume / stop buttons: any [data-action] inside an element with
     data-journey-id (the journeys table rows and the journey page header). */
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const holder = button.closest("[data-journey-id]");
    if (!holder) return;
    const id = holder.dataset.journeyId;
    const action = button.dataset.action;
    if (action === "stop" && !confirm("Stop “" + id + "”? Nobody new enters and every running run is ended.")) return;
    button.disabled = true;
    const result = await api("POST", "/v1/journeys/" + encodeURIComponent(id) + "/" + action);
    if (result.ok) {
      toast(id + ": " + (result.data.status || action) + (result.data.note ? " — " + result.data.note : ""));
      setTimeout(() => location.reload(), 600);
    } else {
      button.disabled = false;
      toast(problem(result), true);
    }
  });

  return { api, el, fill, toast, problem, number, percent };
})();
