// The browser's session: the refresh token stays in an HttpOnly cookie the page cannot read; the
// access token lives in this module's memory only (never localStorage or sessionStorage).

const ROUTES = { signIn: "/web/session", refresh: "/web/session/refresh", signOut: "/web/session/logout" };
// A cross-site page can neither set this header on a form nor send it without a CORS preflight.
const CSRF = { "X-Requested-With": "dashboard" };
// Set by the server beside the HttpOnly cookie; no credential, only a sign that a session may exist.
const HINT = "dashboard_session=1";
// Renew this long before the access token expires.
const RENEW_MARGIN_MS = 60_000;
const UNREACHABLE = "the server could not be reached: check the connection, then sign in again";

export class Session {
  #token = null;
  #renewal = null;
  #timer = null;
  #signingOut = false;
  user = null;

  get authorization() {
    return this.#token ? `Bearer ${this.#token}` : null;
  }

  /**
   * Email and password (and the organization, where users of several share them): true once signed
   * in, else {status, code, message, orgIds}: the server's answer (status 0 when it could not be
   * reached) and, when it asks which organization, their ids.
   */
  async signIn(email, password, orgId = null) {
    let response;
    try {
      response = await fetch(ROUTES.signIn, {
        method: "POST",
        credentials: "same-origin",
        headers: { ...CSRF, "Content-Type": "application/json" },
        body: JSON.stringify(orgId === null ? { email, password } : { email, password, org_id: orgId }),
      });
    } catch {
      // fetch's own words ("Failed to fetch") say nothing a reader can act on.
      return { status: 0, code: "unreachable", orgIds: null, message: UNREACHABLE };
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body?.error?.message || `sign-in failed (${response.status})`;
      return { status: response.status, code: body?.error?.code ?? null, message,
        orgIds: body?.error?.details?.org_ids ?? null };
    }
    this.#accept(body);
    return true;
  }

  /** Exchange the cookie for a fresh access token; false when there is no valid session. */
  renew() {
    // One renewal at a time: requests failing together wait for the same one.
    this.#renewal ??= this.#refresh().finally(() => { this.#renewal = null; });
    return this.#renewal;
  }

  async #refresh() {
    // Signing out: nothing is renewed (the socket's close and requests in flight then end quietly).
    if (this.#signingOut) return false;
    if (!document.cookie.split("; ").includes(HINT)) return false;
    const response = await fetch(ROUTES.refresh, { method: "POST", credentials: "same-origin", headers: CSRF });
    if (!response.ok) {
      this.#token = null;
      return false;
    }
    this.#accept(await response.json());
    return true;
  }

  #accept(body) {
    this.#token = body.access_token;
    this.user = body.user;
    clearTimeout(this.#timer);
    const delay = Math.max(5_000, body.expires_in * 1000 - RENEW_MARGIN_MS);
    // A renewal the network fails is tried again by the next request that needs the token.
    this.#timer = setTimeout(() => this.renew().catch(() => null), delay);
  }

  /** Revoke the refresh cookie and the access token, then forget both. */
  async signOut() {
    this.#signingOut = true;
    const headers = { ...CSRF };
    if (this.#token) headers.Authorization = this.authorization;
    await fetch(ROUTES.signOut, { method: "POST", credentials: "same-origin", headers }).catch(() => null);
    clearTimeout(this.#timer);
    this.#token = null;
    this.user = null;
  }
}

/** The sign-in page, remembering where to come back to; `ended`: a session the page was using could
 * not be renewed (expired, signed out elsewhere, the user disabled), which the sign-in page says. */
export function goToSignIn({ ended = false } = {}) {
  const here = location.pathname + location.search;
  location.assign(`/signin?next=${encodeURIComponent(here)}${ended ? "&ended=1" : ""}`);
}
