// Sign-in: email and password; the session cookie is set by the server, then back to the page asked for.
import { showError } from "../dom.js";
import { Session } from "../session.js";

/**
 * Only a path of this site: `next` comes from the URL, and must not send the browser elsewhere. It is
 * resolved as the browser would resolve it (which drops tabs and newlines and reads "\\" as "/"), and
 * kept only when that lands on this origin.
 */
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  if (!next.startsWith("/")) return "/";
  let target;
  try {
    target = new URL(next, location.origin);
  } catch {
    return "/";
  }
  return target.origin === location.origin ? target.pathname + target.search + target.hash : "/";
}

async function main() {
  const session = new Session();
  if (await session.renew()) {
    location.replace(nextPath());
    return;
  }
  const form = document.getElementById("signin");
  const choice = document.getElementById("organization");
  // Another email is another question: which organization, if any, is asked again.
  form.email.addEventListener("input", () => {
    choice.hidden = true;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const orgId = choice.hidden ? null : Number(form.org_id.value);
    const outcome = await session.signIn(form.email.value, form.password.value, orgId);
    button.disabled = false;
    if (outcome === true) {
      location.replace(nextPath());
      return;
    }
    if (outcome.orgIds) {
      // Users of several organizations have this email and password: which one is the reader's.
      form.org_id.replaceChildren(
        ...outcome.orgIds.map((id) => Object.assign(document.createElement("option"), { value: id, textContent: `Organization ${id}` })),
      );
      choice.hidden = false;
      form.org_id.focus();
    }
    showError(outcome.message);
  });
}

main();
