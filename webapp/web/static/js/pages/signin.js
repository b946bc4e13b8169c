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

// The organization each email of several organizations last signed in to, once the reader had to
// give it (an id, no credential): later sign-ins send it as org_id, shown in a field the reader may
// change; without it such sign-ins are soon refused (429).
const REMEMBERED = "dashboard.signInOrganizations";

function remembered() {
  try {
    const map = JSON.parse(localStorage.getItem(REMEMBERED) || "{}");
    return map && typeof map === "object" ? map : {};
  } catch {
    return {};
  }
}

/** The email's key in the map: a hash (FNV-1a, 32 bits) of its normalized form, so the emails that
 * signed in here are not kept in the browser, only the organization ids. */
function emailKey(email) {
  let hash = 0x811c9dc5;
  for (const char of email.trim().toLowerCase()) {
    hash ^= char.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

function rememberedOrg(email) {
  const id = remembered()[emailKey(email)];
  return Number.isInteger(id) && id > 0 ? id : null;
}

function remember(email, orgId) {
  const map = { ...remembered() };
  if (Number.isInteger(orgId)) map[emailKey(email)] = orgId;
  else delete map[emailKey(email)];
  try {
    localStorage.setItem(REMEMBERED, JSON.stringify(map));
  } catch {
    // Storage refused (private mode, quota): the form still asks when the server does.
  }
}

/** A 429 that asks for org_id: the email's sign-ins without one are over their budget. */
function asksForOrganization(outcome) {
  return outcome.status === 429 && /without org_id/.test(outcome.message);
}

async function main() {
  const session = new Session();
  // Offline at load: no session to resume here; the form says so when it is sent.
  if (await session.renew().catch(() => false)) {
    location.replace(nextPath());
    return;
  }
  document.getElementById("session-ended").hidden = new URLSearchParams(location.search).get("ended") !== "1";
  const form = document.getElementById("signin");
  const choice = document.getElementById("organization");
  const number = document.getElementById("organization-number");
  const hint = document.getElementById("organization-hint");
  const say = (text) => {
    hint.hidden = !text;
    hint.textContent = text || "";
  };
  // The organization id field, with `text` saying why it is asked.
  const askNumber = (value, text) => {
    choice.hidden = true;
    number.hidden = false;
    form.org_number.value = value ?? "";
    say(text);
  };
  // Another email is another question: which organization, if any, is asked again (the one it last
  // signed in to, if this browser remembers it, filled in).
  const emailChanged = () => {
    choice.hidden = true;
    const known = rememberedOrg(form.email.value);
    if (known === null) {
      number.hidden = true;
      say(null);
    } else {
      askNumber(known, "The organization this email last signed in to here; change it to sign in to another.");
    }
  };
  form.email.addEventListener("input", emailChanged);
  form.email.addEventListener("change", emailChanged);
  emailChanged();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let orgId = null;
    if (choice.hidden && number.hidden && rememberedOrg(form.email.value) !== null) {
      emailChanged(); // filled in by the browser without an input event (autofill): show what is sent
    }
    if (!choice.hidden) {
      orgId = Number(form.org_id.value);
    } else if (!number.hidden && form.org_number.value.trim() !== "") {
      // Left empty, the field sends no org_id (the server then says if it needs one).
      const text = form.org_number.value.trim();
      orgId = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!(orgId >= 1 && orgId <= 2 ** 31 - 1)) {
        showError("Give the organization id: a whole number (your administrator can tell you it).");
        form.org_number.focus();
        return;
      }
    }
    const sentRemembered = orgId !== null && orgId === rememberedOrg(form.email.value);
    const button = form.querySelector("button");
    button.disabled = true;
    let outcome;
    try {
      outcome = await session.signIn(form.email.value, form.password.value, orgId);
    } finally {
      button.disabled = false;
    }
    if (outcome === true) {
      // Only an organization the reader had to give is remembered: an email of one organization
      // never sees the field.
      if (orgId !== null) remember(form.email.value, orgId);
      location.replace(nextPath());
      return;
    }
    if (outcome.orgIds) {
      // Users of several organizations have this email and password: which one is the reader's.
      form.org_id.replaceChildren(
        ...outcome.orgIds.map((id) => Object.assign(document.createElement("option"), { value: id, textContent: `organization #${id}` })),
      );
      number.hidden = true;
      choice.hidden = false;
      say(null);
      form.org_id.focus();
      showError(`This email and password belong to accounts in several organizations (${outcome.orgIds.map((id) => `#${id}`).join(", ")}): choose the organization to sign in to, then sign in again.`);
      return;
    }
    if (asksForOrganization(outcome)) {
      askNumber(number.hidden ? rememberedOrg(form.email.value) : form.org_number.value,
        "Your organization's id is a number; your administrator can tell you it.");
      form.org_number.focus();
      showError("This email belongs to accounts in several organizations, and it has signed in too often without saying which: give the organization id, then sign in again.");
      return;
    }
    if (outcome.status === 401 && sentRemembered) {
      // The organization this browser remembered may be the wrong one now: forget it.
      remember(form.email.value, null);
      askNumber(null, "This browser remembered an organization for this email; leave the field empty or give another.");
      showError(`${outcome.message} (in organization #${orgId})`);
      return;
    }
    showError(outcome.message);
  });
}

main();
