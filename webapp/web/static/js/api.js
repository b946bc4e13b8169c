// The REST API as the pages call it: JSON in and out, one renewal of the access token on a 401,
// and the sign-in page when the session itself is gone.
import { goToSignIn } from "./session.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `request failed (${status})`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details || {};
  }
}

export class Api {
  /** `session` renews the access token; null for a page with no session (the embed view). */
  constructor(session) {
    this.session = session;
  }

  async request(method, path, { query, body, raw = false } = {}) {
    const url = query ? `${path}?${new URLSearchParams(query)}` : path;
    let response = await this.#send(method, url, body);
    if (response.status === 401 && this.session) {
      if (!(await this.session.renew())) goToSignIn({ ended: true });
      response = await this.#send(method, url, body);
    }
    if (!response.ok) {
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    if (raw) return response;
    return response.status === 204 ? null : response.json();
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }

  post(path, body, query) {
    return this.request("POST", path, { body, query });
  }

  async #send(method, url, body) {
    const headers = {};
    const authorization = this.session?.authorization;
    if (authorization) headers.Authorization = authorization;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      // fetch's own words ("Failed to fetch") say nothing a reader can act on.
      throw new ApiError(0, { error: { code: "unreachable", message:
        "the server could not be reached: check the connection; the page updates once it is back" } });
    }
  }
}

/** Requests of which only the latest counts (a read overtaken by a later one must not draw): each
 * call of the returned `begin()` starts one and gives its `current()`, true until the next begins. */
export function latestOnly() {
  let latest = 0;
  return () => {
    const mine = ++latest;
    return () => mine === latest;
  };
}
