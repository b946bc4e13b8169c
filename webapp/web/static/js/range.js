// The overview's time range, kept in the page's URL: ?period=7d|30d|90d, or ?start=&end= (dates,
// both days included; a missing one filled in as the explorer fills it).
import { showError } from "./dom.js";

export const PERIODS = ["7d", "30d", "90d"];
// The days of a range the URL names no From for (up to its To), as of one it names no dates at all.
export const DEFAULT_DAYS = 30;

/** `text` when it is a real calendar date `YYYY-MM-DD`, else "" (a hand-edited URL's dates). */
export function validDate(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text || "")) return "";
  const moment = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(moment.getTime()) && moment.toISOString().slice(0, 10) === text ? text : "";
}

/** A local date `YYYY-MM-DD` plus `days`. */
export function addDays(date, days) {
  const moment = new Date(`${date}T00:00:00Z`);
  moment.setUTCDate(moment.getUTCDate() + days);
  return moment.toISOString().slice(0, 10);
}

/** Today's date in the IANA `zone` (the organization's, once an answer has told it; else the
 * browser's), `YYYY-MM-DD`. */
export function today(zone = undefined) {
  try {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
    return parts.format(new Date());
  } catch {
    const now = new Date();
    return new Date(now.getTime() - now.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
  }
}

/** The From and To the URL names, as written, null when it names neither. A missing (or empty) one is
 * filled in as the explorer fills it: To is today in `zone` (the organization's), From the
 * DEFAULT_DAYS up to To (up to today when To is no date, which is then said). */
export function urlDates(zone = undefined) {
  const params = new URLSearchParams(location.search);
  const [start, end] = [params.get("start") || "", params.get("end") || ""];
  if (!start && !end) return null;
  const last = end || today(zone);
  return { start: start || addDays(validDate(last) || today(zone), 1 - DEFAULT_DAYS), end: last };
}

/** What is wrong with the range the URL names (a period that is none, a date that is none, an end
 * before its start), in the explorer's words; null when it names a range or none at all. */
export function urlRangeProblem(zone = undefined) {
  const params = new URLSearchParams(location.search);
  const period = params.get("period");
  // "custom" is the form's own choice (a submit without scripts, an old bookmark): its dates decide.
  if (period !== null && period !== "custom" && !PERIODS.includes(period)) {
    return `"Period" (${period}) is not one of ${PERIODS.join(", ")}`;
  }
  const dates = urlDates(zone);
  if (!dates) return null;
  for (const [name, label] of [["start", "From"], ["end", "To"]]) {
    if (!validDate(dates[name])) return `"${label}" (${dates[name]}) is not a date (YYYY-MM-DD)`;
  }
  const { start, end } = dates;
  return start > end ? `"From" (${start}) must be on or before "To" (${end})` : null;
}

/** The zone the page's header shows, or undefined (the browser's) before an answer has told it. */
function headerZone() {
  return document.getElementById("zone")?.textContent.trim() || undefined;
}

export class Range {
  constructor({ period = "30d", start = "", end = "" } = {}) {
    this.custom = Boolean(start && end);
    this.period = this.custom ? "custom" : PERIODS.includes(period) ? period : "30d";
    this.start = start;
    this.end = end;
  }

  /** The range the URL names, its missing date filled in (urlDates; `zone`: the organization's). */
  static fromUrl(zone = undefined) {
    const params = new URLSearchParams(location.search);
    const dates = urlDates(zone);
    const start = validDate(dates?.start);
    const end = validDate(dates?.end);
    // A range the URL gets wrong (a date that is none, or an end before its start) is the default one.
    const custom = start && end && start <= end;
    return new Range({
      period: params.get("period") || "30d",
      start: custom ? start : "",
      end: custom ? end : "",
    });
  }

  /** The dashboard's query: a period, or [start, end + 1 day). */
  query() {
    return this.custom ? { start: this.start, end: addDays(this.end, 1) } : { period: this.period };
  }

  /** [start, end) as dates, for routes that take no period: a period is that many days up to `day`. */
  dates(day = today()) {
    if (this.custom) return { start: this.start, end: addDays(this.end, 1) };
    const days = Number.parseInt(this.period, 10);
    return { start: addDays(day, 1 - days), end: addDays(day, 1) };
  }

  /** The URL's query string for this range. */
  search() {
    const params = this.custom ? { start: this.start, end: this.end } : { period: this.period };
    return `?${new URLSearchParams(params)}`;
  }
}

/** Wire the range form: it shows `range` and calls `onChange(newRange)` when the user picks another;
 * returns the function that shows another range in it (after Back or Forward). `zone()`: the
 * organization's zone, whose today a period ends on (the header's, once an answer has told it). */
export function bindRangeForm(form, range, onChange, { zone = headerZone } = {}) {
  const period = form.querySelector("#period");
  const start = form.querySelector("#start");
  const end = form.querySelector("#end");
  let shown = range;
  const show = (r) => {
    shown = r;
    period.value = r.period;
    form.classList.toggle("is-custom", r.custom || r.period === "custom");
    if (start) start.value = r.start;
    if (end) end.value = r.end;
  };
  show(range);
  period.addEventListener("change", () => {
    if (period.value === "custom") {
      form.classList.add("is-custom");
      // From and To start as the range on screen: a custom range is most often a change of it.
      const dates = shown.dates(today(zone()));
      if (start && !start.value) start.value = dates.start;
      if (end && !end.value) end.value = addDays(dates.end, -1);
      return;
    }
    const next = new Range({ period: period.value });
    show(next);
    onChange(next);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (period.value !== "custom") return;
    const missing = [[start, "From"], [end, "To"]].filter(([input]) => !input.value).map(([, label]) => `"${label}"`);
    if (missing.length) {
      // A date input left empty, or holding a date the browser could not read.
      showError(`${missing.join(" and ")} ${missing.length > 1 ? "need dates" : "needs a date"} (YYYY-MM-DD)`);
      (missing[0] === '"From"' ? start : end).focus();
      return;
    }
    if (start.value > end.value) {
      // Said at once, next to the dates, and no history step for a range that is none.
      showError(`"From" (${start.value}) must be on or before "To" (${end.value})`);
      return;
    }
    const next = new Range({ start: start.value, end: end.value });
    show(next);
    onChange(next);
  });
  return show;
}
