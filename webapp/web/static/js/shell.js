// What every signed-in page starts with: a session (or the sign-in page), the API, the live socket
// and its visible state, the navigation and sign-out.
import { Api } from "./api.js";
import { setText } from "./dom.js";
import { Live } from "./live.js";
import { Session, goToSignIn } from "./session.js";

const STATE_LABELS = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
};

/** The page's session, API and live socket; null when the browser must sign in first. */
export async function startPage(page) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
  }
  const session = new Session();
  if (!(await session.renew())) {
    goToSignIn();
    return null;
  }
  // The organization's zone, for every role on every page (a page's answers may name it again).
  const zone = document.getElementById("zone");
  if (zone && session.user?.timezone) setText(zone, session.user.timezone);
  const api = new Api(session);
  const live = new Live(api);
  const badge = document.getElementById("live");
  live.on("state", (state) => {
    badge.dataset.state = state;
    setText(badge, STATE_LABELS[state]);
  });
  document.getElementById("signout").addEventListener("click", async () => {
    live.stop(); // before the logout: its announcement closes the socket at once
    await session.signOut();
    location.assign("/signin");
  });
  live.start();
  return { session, api, live };
}

/** Run `task` at most once per `ms`, at the end of a burst of calls. */
export function debounce(task, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(task, ms);
  };
}
