/* Channel codes page: create a code at its vendor and archive one, through
 * /v1/channel-codes with the console's cookie and header. The list itself
 * is the server's rendering (complete without this script). */
"use strict";

(() => {
  const { api, toast, problem } = Console;
  const list = (text) => text.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);

  const form = document.getElementById("code-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = form.elements;
      const body = {
        vendor: f.vendor.value,
        placement: f.placement.value.trim(),
        tags: list(f.tags.value),
        staff: list(f.staff.value),
      };
      if (f.name.value.trim()) body.name = f.name.value.trim();
      if (f.group.value.trim()) body.group = f.group.value.trim();
      if (f.welcome_journey.value.trim()) body.welcome_journey = f.welcome_journey.value.trim();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      const result = await api("POST", "/v1/channel-codes", body);
      button.disabled = false;
      if (!result.ok) {
        toast(problem(result), true);
        return;
      }
      toast("Code " + result.data.placement + " created.");
      setTimeout(() => location.reload(), 400);
    });
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-archive]");
    if (!button) return;
    if (!confirm("Archive this code? A WeCom code stops adding contacts; printed Official Account codes keep counting.")) return;
    button.disabled = true;
    const result = await api("DELETE", "/v1/channel-codes/" + encodeURIComponent(button.dataset.archive));
    if (result.ok) {
      toast(result.data.note || "Code archived.");
      setTimeout(() => location.reload(), 400);
    } else {
      button.disabled = false;
      toast(problem(result), true);
    }
  });
})();
