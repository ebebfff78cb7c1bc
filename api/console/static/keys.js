/* Keys page (admins): create a key (shown once) and revoke keys, through
 * /v1/keys with the console's cookie and header. */
"use strict";

(() => {
  const form = document.getElementById("key-form");
  if (!form) return;
  const { api, toast, problem } = Console;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await api("POST", "/v1/keys", { name: form.elements.name.value, role: form.elements.role.value });
    button.disabled = false;
    if (!result.ok) {
      toast(problem(result), true);
      return;
    }
    document.getElementById("new-key-value").textContent = result.data.key;
    document.getElementById("new-key").hidden = false;
    toast("Key for " + result.data.name + " created; reload the page to see it in the list.");
    form.reset();
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-revoke]");
    if (!button) return;
    if (!confirm("Revoke this key? Whoever uses it is refused from now on.")) return;
    button.disabled = true;
    const result = await api("DELETE", "/v1/keys/" + encodeURIComponent(button.dataset.revoke));
    if (result.ok) {
      toast("Key revoked.");
      setTimeout(() => location.reload(), 400);
    } else {
      button.disabled = false;
      toast(problem(result), true);
    }
  });
})();
