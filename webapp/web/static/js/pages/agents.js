// The agents report: per agent, tickets solved, median first reply and resolution, SLA, CSAT,
// one-touch and reopen rate over a range, as a table sorted by any column. A server without the
// report (not in its API document, or a 404) gets a clear "not available" instead of a table.
import { latestOnly } from "../api.js";
import { h, pageFailed, setText, showError } from "../dom.js";
import * as fmt from "../format.js";
import { Range, bindRangeForm, today, urlRangeProblem } from "../range.js";
import { chooseSchedule, fillSchedules, isBusiness, loadSchedules, scheduleQuery } from "../schedules.js";
import { debounce, startPage } from "../shell.js";
import { Spec } from "../spec.js";

const PATH = "/api/v1/analytics/agents";
const DEFAULT_MIN_TICKETS = "5";
// A burst of ticket changes is one reload.
const RELOAD_AFTER_MS = 1000;

/** The table's columns: the report's fields, in the contract's order. */
const COLUMNS = [
  { key: "agent", label: "Agent", text: true },
  { key: "solved", label: "Solved", show: (v) => fmt.number(v, "count") },
  { key: "first_reply_p50", label: "First reply p50", show: (v) => fmt.number(v, "hours") },
  { key: "resolution_p50", label: "Resolution p50", show: (v) => fmt.number(v, "hours") },
  { key: "sla_compliance_pct", label: "SLA", show: fmt.percentage },
  { key: "csat_pct", label: "CSAT", show: fmt.percentage },
  { key: "one_touch_pct", label: "One-touch", show: fmt.percentage },
  { key: "reopen_rate", label: "Reopen rate", show: fmt.percentage },
];

/** The page's query from its URL: the range (a missing date filled in the organization's `zone`),
 * the minimum solved, the clock and its schedule. */
function fromUrl(zone) {
  const params = new URLSearchParams(location.search);
  return {
    range: Range.fromUrl(zone),
    minTickets: params.get("min_tickets") ?? DEFAULT_MIN_TICKETS,
    clock: params.get("clock") || "",
    scheduleId: params.get("schedule_id") || "",
  };
}

function toSearch({ range, minTickets, clock, scheduleId }) {
  const params = new URLSearchParams(range.search());
  if (minTickets !== DEFAULT_MIN_TICKETS) params.set("min_tickets", minTickets);
  if (clock) params.set("clock", clock);
  for (const [name, value] of Object.entries(scheduleQuery(clock, scheduleId))) params.set(name, value);
  return `?${params}`;
}

/** Rows in the order of `sort` ({key, descending}); an absent value sorts last either way. */
function sorted(rows, { key, descending }) {
  const column = COLUMNS.find((c) => c.key === key);
  const sign = descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
    if (y === null || y === undefined) return -1;
    return sign * (column.text ? String(x).localeCompare(String(y)) : x - y);
  });
}

class AgentsTable {
  #rows = [];
  // The API's own order first: solved, most first.
  #sort = { key: "solved", descending: true };

  constructor(table) {
    this.table = table;
  }

  show(rows) {
    this.#rows = rows;
    this.#draw();
  }

  /** No table: nothing of another range left under a range that is none. */
  clear() {
    this.#rows = [];
    this.table.replaceChildren();
  }

  #header(column) {
    const active = this.#sort.key === column.key;
    const button = h("button", { type: "button", class: "sort", dataset: { key: column.key } }, column.label);
    button.addEventListener("click", () => {
      // A new column starts with its largest (or A to Z for names); the same column flips.
      this.#sort = active
        ? { key: column.key, descending: !this.#sort.descending }
        : { key: column.key, descending: !column.text };
      this.#draw(column.key);
    });
    const order = this.#sort.descending ? "descending" : "ascending";
    return h("th", { scope: "col", "aria-sort": active ? order : "none" }, button);
  }

  /** Draw the table; the header button of `focusKey` (else the one that had the focus) keeps it, so
   * the keyboard can sort again (Enter or Space on it turns the order). */
  #draw(focusKey = this.#focusedKey()) {
    const head = h("tr", {}, COLUMNS.map((column) => this.#header(column)));
    const body = sorted(this.#rows, this.#sort).map((row) => h("tr", { dataset: { agent: row.agent ?? "" } },
      COLUMNS.map((column) => {
        const value = row[column.key];
        const text = column.text ? value ?? "(unassigned)" : column.show(value);
        return h("td", { dataset: { key: column.key, value: value ?? "" } }, text);
      })));
    if (!body.length) {
      body.push(h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty" }, "No agent solved enough tickets in this range")));
    }
    this.table.replaceChildren(h("thead", {}, head), h("tbody", {}, body));
    if (focusKey) this.table.querySelector(`button.sort[data-key="${focusKey}"]`)?.focus();
  }

  /** The key of the header button that has the focus, if one has. */
  #focusedKey() {
    const focused = document.activeElement;
    return focused?.matches?.("button.sort") && this.table.contains(focused) ? focused.dataset.key : null;
  }
}

function unavailable() {
  document.getElementById("unavailable").hidden = false;
  document.getElementById("agents").hidden = true;
  document.body.dataset.unavailable = "true";
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

async function main() {
  const specLoading = Spec.start();
  const page = await startPage("agents");
  if (!page) return;
  const [spec, schedules] = await Promise.all([specLoading, loadSchedules(page.api)]);
  if (!spec.has(PATH)) {
    unavailable();
    return;
  }
  const state = fromUrl(page.session.user?.timezone);
  const form = document.getElementById("range");
  const minTickets = document.getElementById("min_tickets");
  minTickets.value = state.minTickets;
  const clocks = spec.parameterValues(PATH, "clock");
  document.getElementById("clock-field").hidden = !clocks.length;
  const clock = document.getElementById("clock");
  clock.replaceChildren(h("option", { value: "" }, "(default)"), ...clocks.map((c) => h("option", { value: c }, c)));
  clock.value = state.clock;
  const schedule = document.getElementById("schedule_id");
  fillSchedules(schedule, schedules);
  // The Schedule field is shown with the business clock only: the calendar clock counts every hour.
  const showSchedule = () => {
    chooseSchedule(schedule, state.scheduleId);
    document.getElementById("schedule-field").hidden = !isBusiness(state.clock);
  };
  showSchedule();
  const table = new AgentsTable(document.getElementById("agents"));
  // A range the URL gets wrong is said, as the overview and the explorer say it, rather than another
  // range shown under that URL; a range chosen in the form is always one.
  let problem = urlRangeProblem(page.session.user?.timezone);

  const begin = latestOnly();
  // The organization's zone (the session's, else the first answer's): "the last 7 days" are its days,
  // not the browser's.
  let zone = page.session.user?.timezone;
  const load = async () => {
    const current = begin();
    if (problem) {
      // Nothing asked, and no table of another range left under the error.
      showError(problem);
      setText(document.getElementById("range-note"), "");
      table.clear();
      delete document.body.dataset.query;
      document.body.dataset.refused = String(Number(document.body.dataset.refused || 0) + 1);
      return;
    }
    const { start, end } = state.range.dates(today(zone));
    const query = { start, end };
    if (state.minTickets !== "") query.min_tickets = state.minTickets;
    if (state.clock) query.clock = state.clock;
    Object.assign(query, scheduleQuery(state.clock, state.scheduleId));
    try {
      const answer = await page.api.get(PATH, query);
      if (!current()) return;
      if (answer.timezone && answer.timezone !== zone) {
        zone = answer.timezone;
        if (state.range.dates(today(zone)).end !== end) {
          load(); // the organization's today is not the browser's: ask for its own days
          return;
        }
      }
      table.show(answer.agents);
      if (answer.timezone) setText(document.getElementById("zone"), answer.timezone);
      setText(document.getElementById("range-note"), `${start} to ${end} (end excluded)`);
      document.body.dataset.query = new URLSearchParams(query).toString();
      showError(null);
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (error) {
      if (!current()) return;
      // A 404 without a schedule named is a server without the report; with one, that schedule is
      // gone (deleted, or a bookmark of another organization's): said, and another can be chosen.
      if (error.status === 404 && !query.schedule_id) unavailable();
      else showError(error.message, { stale: true });
    }
  };
  // Each change is a step of the browser's history: Back shows the table before it.
  const changed = () => {
    history.pushState(null, "", toSearch(state));
    load();
  };
  const showRange = bindRangeForm(form, state.range, (next) => {
    state.range = next;
    problem = null;
    changed();
  });
  window.addEventListener("popstate", () => {
    Object.assign(state, fromUrl(page.session.user?.timezone));
    problem = urlRangeProblem(page.session.user?.timezone);
    showRange(state.range);
    minTickets.value = state.minTickets;
    clock.value = state.clock;
    showSchedule();
    load();
  });
  minTickets.addEventListener("change", () => {
    state.minTickets = minTickets.value.trim();
    changed();
  });
  clock.addEventListener("change", () => {
    state.clock = clock.value;
    // A schedule chosen stays with the business clock only (the API refuses it with the calendar's).
    if (!isBusiness(state.clock)) state.scheduleId = "";
    showSchedule();
    changed();
  });
  schedule.addEventListener("change", () => {
    state.scheduleId = schedule.value;
    changed();
  });
  page.live.on("metric_update", debounce(load, RELOAD_AFTER_MS));
  await load();
}

main().catch(pageFailed);
