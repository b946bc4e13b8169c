// Building the page: every value from the API goes in as text, never as HTML.

/** An element with attributes and children; strings and numbers become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false).map(
    (c) => (c instanceof Node ? c : document.createTextNode(String(c))),
  ));
  return el;
}

/** Set an element's text (and nothing else). */
export function setText(el, value) {
  el.textContent = value === null || value === undefined ? "" : String(value);
}

/** A page whose start failed (the API document or the API out of reach): said in words, in place of a
 * blank page, and marked for tests (`data-failed`). */
export function pageFailed(error) {
  showError(`This page could not load: ${error?.message || error}. Reload to try again.`);
  document.body.dataset.failed = "true";
}

/** Show an error message in the page's alert line, or hide it with null. With `stale`, the results
 * on the page are dimmed until the next message (or null): they answer an earlier request. */
export function showError(message, { stale = false } = {}) {
  const el = document.getElementById("error");
  document.querySelector("main")?.classList.toggle("stale", Boolean(message) && stale);
  if (!el) return;
  el.hidden = !message;
  setText(el, message || "");
}
