// How numbers read on the page: one place, so tiles, tables and tooltips agree.

/** `format` with a value that rounds to zero read "0.0", never "-0.0" (a sign with no number). By
 * hand rather than with signDisplay "negative", which browsers before 2023 refuse (a RangeError at
 * load would break every page). */
function unsignedZero(format) {
  return { format: (value) => format.format(value).replace(/^-(0(\.0+)?)$/, "$1") };
}

const integer = unsignedZero(new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 }));
const decimal = unsignedZero(new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 2 }));

/** The sign of `value` as `decimal` shows it: "±" for one that rounds to zero. */
function sign(value) {
  const shown = Number(decimal.format(Math.abs(value)).replaceAll(",", ""));
  return shown === 0 ? "±" : value > 0 ? "+" : "−";
}

/** A value in its unit: tickets as integers, hours and scores with decimals, "–" when absent. */
export function number(value, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const text = unit === "tickets" || unit === "count" ? integer.format(value) : decimal.format(value);
  return unit === "hours" ? `${text} h` : text;
}

/** A fraction 0..1 as a percentage. */
export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "–";
  return `${decimal.format(fraction * 100)} %`;
}

/** A percentage already on 0..100 (the API's `_pct` fields). */
export function percentage(value) {
  if (value === null || value === undefined) return "–";
  return `${decimal.format(value)} %`;
}

/** A change in percent with its sign, or "–" when there is nothing to compare with. */
export function change(pct) {
  if (pct === null || pct === undefined) return "–";
  return `${sign(pct)}${decimal.format(Math.abs(pct))} %`;
}

/** A difference of two values with its sign ("+0.05"), for a signed score, whose change in percent
 * means nothing near zero; "–" when either is absent. */
export function difference(value, previous) {
  if (value === null || value === undefined || previous === null || previous === undefined) return "–";
  const delta = value - previous;
  return `${sign(delta)}${decimal.format(Math.abs(delta))}`;
}

/** -1, 0 or 1: the direction of a change as the page shows it (0 when it rounds to nothing). */
export function direction(delta) {
  if (delta === null || delta === undefined || Number.isNaN(delta)) return 0;
  return { "+": 1, "−": -1, "±": 0 }[sign(delta)];
}

/** A bucket's start as the page shows it: date, or for hourly buckets date, hour and UTC offset (the
 * repeated hour of an autumn change is two buckets with the same local hour, told apart by it). */
export function bucket(iso, granularity = "daily") {
  if (granularity !== "hourly") return iso.slice(0, 10);
  const offset = /([+-]\d\d:\d\d|Z)$/.exec(iso);
  const local = iso.slice(0, 16).replace("T", " ");
  return offset ? `${local} ${offset[1] === "Z" ? "UTC" : offset[1].replace("-", "−")}` : local;
}

/** An instant (seconds since the epoch) as a date, or date and hour, in the zone `zone`. */
export function instant(seconds, zone, granularity = "daily") {
  const options = { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" };
  if (granularity === "hourly") Object.assign(options, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  // en-CA writes dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", options).format(new Date(seconds * 1000)).replace(",", "");
}
