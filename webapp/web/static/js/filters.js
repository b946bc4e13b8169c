// A filter's values as people type them and as the API's query strings take them (README): a
// comma-separated list, a value holding a comma in double quotes, a quote inside it doubled, as in CSV
// (`"returns, damaged",billing`). One parser for every box, so the explorer and the alert form read
// the same text the same way, and one writer, so a value holding a comma never reads as two.

/** A quoted value: taken as written (`"null"` is an assignee named null, bare `null` the unassigned). */
class Quoted extends String {}

/** The values of `text`, trimmed, empty ones dropped. Like the server's parser, a value beginning with
 * a double quote runs to the quote closing it (to the end when none does: the box is still being
 * typed); a quote elsewhere is an ordinary character (`24" monitors`). */
export function parseValues(text) {
  const values = [];
  let i = 0;
  const n = text.length;
  while (i <= n) {
    while (text[i] === " ") i += 1;
    let value;
    if (text[i] === '"') {
      let inner = "";
      i += 1;
      for (;;) {
        const close = text.indexOf('"', i);
        if (close < 0) {
          inner += text.slice(i);
          i = n;
          break;
        }
        inner += text.slice(i, close);
        i = close + 1;
        if (text[i] !== '"') break;
        inner += '"';
        i += 1;
      }
      value = new Quoted(inner.trim());
      // Text between the closing quote and the next comma is dropped, as a typo the list shows.
    }
    const comma = text.indexOf(",", i);
    value ??= (comma < 0 ? text.slice(i) : text.slice(i, comma)).trim();
    if (String(value)) values.push(value);
    if (comma < 0) break;
    i = comma + 1;
  }
  return values;
}

/** One value as a query string (and a box) writes it: in double quotes when it holds a comma or starts
 * with a quote, or is a quoted `null`, so that it reads back as the one value it is. */
export function writeValue(value) {
  const text = String(value);
  const quote = /,|^"/.test(text) || (value instanceof Quoted && text === "null");
  return quote ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Values as a query string's list: `"returns, damaged",billing`. */
export function writeValues(values) {
  return values.map(writeValue).join(",");
}

/** Values of an answer as a box holds them, to be read back by parseValues as the same values: the
 * unassigned (null) bare, an assignee named null (the string "null") quoted, a value holding a comma
 * quoted. */
export function boxValues(values) {
  return writeValues(values.map((v) => (v === null ? "null" : v === "null" ? new Quoted(v) : v)));
}

/** Values of an answer as the page shows them: one after the other, a value holding a comma quoted, as
 * is an assignee named null (the string "null"); the unassigned (null) as "(none)". */
export function showValues(values) {
  return values.map((v) => (v === null ? "(none)" : v === "null" ? '"null"' : writeValue(v))).join(", ");
}

/** A JSON body's filter for `values`: a list of strings. An assignee named null has no spelling in a
 * list (the API reads "null" there as the unassigned): that filter goes as its query-string text. */
export function bodyFilter(values) {
  return values.some((v) => v instanceof Quoted && String(v) === "null") ? writeValues(values) : values.map(String);
}
