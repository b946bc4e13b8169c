// Sign-in: email and password; the session cookie is set by the server, then back to the page asked for.
import { showError } from "../dom.js";
import { Session } from "../session.js";

/** Only a path of this site: `next` comes from the URL, and must not send the browser elsewhere. */
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

async function main() {
  const session = new Session();
  if (await session.renew()) {
    location.replace(nextPath());
    return;
  }
  const form = document.getElementById("signin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const outcome = await session.signIn(form.email.value, form.password.value);
    button.disabled = false;
    if (outcome === true) location.replace(nextPath());
    else showError(outcome);
  });
}

main();
