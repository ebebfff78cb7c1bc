/* Journeys list: numbers and statuses refresh in place every few seconds.
 *
 * The server renders the list; this script fetches the same page again and
 * swaps in the rows that changed (all rows when journeys came or went),
 * leaving a row alone while focus is in it, so a keyboard user never loses
 * their place. The buttons keep working: console.js listens on the document.
 */
"use strict";

(() => {
  const table = document.getElementById("journeys");
  if (!table) return;
  const every = Number(table.dataset.refreshMs || 5000);
  const state = document.getElementById("list-state");
  const ids = (body) => [...body.querySelectorAll("tr[data-journey-id]")].map((tr) => tr.dataset.journeyId);

  function swap(fresh) {
    const body = table.querySelector("tbody");
    const focused = document.activeElement && body.contains(document.activeElement);
    if (ids(body).join("\n") !== ids(fresh).join("\n")) {
      if (!focused) body.replaceWith(fresh);
      return;
    }
    for (const row of fresh.querySelectorAll("tr[data-journey-id]")) {
      const old = body.querySelector('tr[data-journey-id="' + CSS.escape(row.dataset.journeyId) + '"]');
      if (old && old.innerHTML !== row.innerHTML && !old.contains(document.activeElement)) old.replaceWith(row);
    }
  }

  async function refresh() {
    if (!document.hidden && !table.querySelector("button:disabled")) {  // not while an action is under way
      try {
        const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = response.ok ? page.querySelector("#journeys tbody") : null;
        if (fresh) {
          swap(fresh);
          table.dataset.refreshes = String(Number(table.dataset.refreshes || 0) + 1);
          if (state) state.textContent = "Updated " + new Date().toLocaleTimeString();
        } else if (state) {
          state.textContent = "Could not refresh (signed out?) — reload the page.";
        }
      } catch (error) {
        if (state) state.textContent = "Could not refresh: " + error;
      }
    }
    setTimeout(refresh, every);
  }

  setTimeout(refresh, every);
})();
