// The explorer: any metric by granularity, range, filters, group-by, clock and percentiles, drawn as
// a chart and a table, written as the curl line of the same request, and exported. The query lives
// in the page's URL, so a view can be bookmarked and shared; each query run is a step of the
// browser's history (Back shows the one before). A filter is kept as a query string writes it
// (`"returns, damaged",billing`) and sent in a JSON body as the list it reads as. A query too long
// for a URL (a long list of filter values) is asked in a JSON body and kept out of the address.
import { latestOnly } from "../api.js";
import { LineChart } from "../charts.js";
import { h, pageFailed, setText, showError } from "../dom.js";
import { bodyFilter, parseValues, writeValues } from "../filters.js";
import * as fmt from "../format.js";
import { Jobs, bindExport } from "../jobs.js";
import { DEFAULT_DAYS, addDays, today, validDate } from "../range.js";
import {
  chooseSchedule, fillSchedules, isBusiness, loadSchedules, scheduleBody, scheduleQuery,
} from "../schedules.js";
import { debounce, startPage } from "../shell.js";
import { Spec } from "../spec.js";

const RERUN_AFTER_MS = 300;
const AGGREGATIONS = "/api/v1/analytics/aggregations";
// The longest path and query a request or the page's address may have: gunicorn refuses a request
// line over 4,094 bytes (414), and a page URL over it would not load again from a bookmark or Back.
const LONG_URL = 3_500;
// The form's fields kept as they are typed (the schedule and the filters are read on their own).
const FIELDS = ["metric", "granularity", "start", "end", "clock", "group_by", "percentiles"];

/** The query the page shows: from the URL, with defaults (the last days of the organization's zone). A
 * date the URL names is kept as written, even one that is none: the page says what is wrong with it
 * (rangeProblem) rather than show another range under that URL. */
function stateFromUrl(spec, zone) {
  const params = new URLSearchParams(location.search);
  const end = params.get("end") || today(zone);
  const start = params.get("start") || addDays(validDate(end) || today(zone), 1 - DEFAULT_DAYS);
  const state = {
    metric: params.get("metric") || "ticket_count",
    granularity: params.get("granularity") || "daily",
    start,
    end,
    clock: params.get("clock") || "",
    schedule_id: params.get("schedule_id") || "",
    group_by: params.get("group_by") || "",
    percentiles: params.get("percentiles") || "",
    filters: {},
  };
  for (const dimension of spec.dimensions) {
    const values = parseValues(params.get(dimension) || "");
    if (values.length) state.filters[dimension] = writeValues(values);
  }
  return state;
}

function stateToSearch(state) {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    if (state[name]) params.set(name, state[name]);
  }
  for (const [name, value] of Object.entries(scheduleQuery(state.clock, state.schedule_id))) params.set(name, value);
  for (const [dimension, values] of Object.entries(state.filters)) params.set(dimension, values);
  return `?${params}`;
}

/** What is wrong with the range of `state` (in the dates the user chose), or null when it is one. The
 * same words whether the range came from the URL or the form. */
function rangeProblem(state) {
  for (const [name, label] of [["start", "From"], ["end", "To"]]) {
    const text = state[name];
    if (!validDate(text)) {
      return text ? `"${label}" (${text}) is not a date (YYYY-MM-DD)` : `"${label}" needs a date (YYYY-MM-DD)`;
    }
  }
  // Said in the dates the user chose (the request's end is the day after "To").
  if (state.start > state.end) return `"From" (${state.start}) must be on or before "To" (${state.end})`;
  return null;
}

function percentileEntries(text) {
  return text.split(",").map((p) => p.trim()).filter(Boolean);
}

function percentileList(text) {
  return percentileEntries(text).map(Number);
}

/** What is wrong with the percentiles box (an entry that is not a whole number the API takes, or too
 * many of them), or null. Said before anything is asked: the API would only name an entry's index. */
function percentilesProblem(state, spec) {
  const { minimum, maximum, maxItems } = spec.percentileLimits;
  const entries = percentileEntries(state.percentiles);
  for (const entry of entries) {
    const value = Number(entry);
    if (!/^[+-]?\d+$/.test(entry) || value < minimum || value > maximum) {
      return `percentiles: "${entry}" is not a whole number from ${minimum} to ${maximum}`;
    }
  }
  return entries.length > maxItems ? `percentiles: at most ${maxItems}, not ${entries.length}` : null;
}

/** What is wrong with the query of `state` (its range, then its percentiles), or null. */
function queryProblem(state, spec) {
  return rangeProblem(state) || percentilesProblem(state, spec);
}

/** The filters of `state` as a JSON body takes them: lists of values. */
function bodyFilters(filters) {
  return Object.fromEntries(Object.entries(filters).map(([name, text]) => [name, bodyFilter(parseValues(text))]));
}

/** The URL of `request` (its query string, if any), on this page's origin. */
function requestUrl(request) {
  const url = new URL(request.path, location.origin);
  if (request.query) url.search = new URLSearchParams(request.query).toString();
  return url;
}

/** Whether a path and query of `length` characters is more than a server or an address takes. */
function tooLong(length) {
  return length > LONG_URL;
}

/** The API request for `state`: GET time-series, or POST aggregations for group-by and percentiles
 * (and for a time series whose GET would be too long). `view` says how its answer is drawn. */
function buildRequest(state, spec) {
  const end = addDays(state.end, 1);
  const clock = state.clock ? { clock: state.clock } : {};
  if (!state.group_by && !state.percentiles) {
    const series = {
      method: "GET",
      path: `/api/v1/analytics/time-series/${state.metric}`,
      query: {
        granularity: state.granularity, start: state.start, end, ...clock,
        ...scheduleQuery(state.clock, state.schedule_id), ...state.filters,
      },
      dataset: "time-series",
      view: "series",
      exportQuery: {
        metric: state.metric, granularity: state.granularity, start: state.start, end,
        filters: bodyFilters(state.filters), ...clock, ...scheduleBody(state.clock, state.schedule_id),
      },
    };
    const url = requestUrl(series);
    return tooLong(url.pathname.length + url.search.length) ? seriesByPost(series, state, spec) : series;
  }
  const body = {
    metrics: [state.metric],
    group_by: state.group_by ? [state.group_by] : [],
    filters: bodyFilters(state.filters),
    start: state.start,
    end,
    granularity: state.granularity,
  };
  if (state.percentiles) body.percentiles = percentileList(state.percentiles);
  if (state.clock && spec.aggregationTakes("clock")) {
    Object.assign(body, clock, scheduleBody(state.clock, state.schedule_id));
  }
  return { method: "POST", path: AGGREGATIONS, body, dataset: "aggregations", view: "aggregation", exportQuery: body };
}

/** The time series of `series` asked as POST aggregations of its one metric, no group and no
 * percentiles: the same cells in a JSON body, as a server refuses a GET whose URL is this long (414).
 * Its export is the time series' own (already a JSON body). */
function seriesByPost(series, state, spec) {
  const { granularity, start, end } = series.query;
  // No percentiles: the API's default ones would be counted for a view that shows none.
  const body = {
    metrics: [state.metric], group_by: [], filters: series.exportQuery.filters,
    start, end, granularity, percentiles: [],
  };
  if (state.clock && spec.aggregationTakes("clock")) {
    Object.assign(body, { clock: state.clock }, scheduleBody(state.clock, state.schedule_id));
  }
  return { ...series, method: "POST", path: AGGREGATIONS, query: undefined, body, view: "series-by-aggregation" };
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

/** The same request as a curl line; the token stays a variable, never the page's own. */
function curlLine(request) {
  const url = requestUrl(request);
  // Double quotes: the shell fills in $TOKEN.
  const parts = ["curl", "-H", '"Authorization: Bearer $TOKEN"'];
  if (request.body) {
    parts.push("-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(JSON.stringify(request.body)));
  }
  parts.push(shellQuote(url.toString()));
  return parts.join(" ");
}

/** Chart lines and table rows of a time-series answer. */
function fromSeries(answer) {
  const times = answer.points.map((p) => p.bucket);
  return {
    unit: answer.unit,
    times,
    lines: [{ label: answer.metric, values: answer.points.map((p) => p.value) }],
    columns: ["bucket", "value", "count", "min", "max"],
    rows: answer.points.map((p) => [fmt.bucket(p.bucket, answer.granularity), p.value, p.count, p.min, p.max]),
  };
}

/** A cell's value, as a time series' point has it: a counting metric's own `value` when the cell has
 * one (backlog, net_flow: not the number of events counted), else its count (ticket_count, solved,
 * reopens); a measured metric's mean (durations, scores, percentages). */
function cellValue(stats) {
  if (!stats) return null;
  if ("value" in stats) return stats.value;
  if ("avg" in stats) return stats.avg;
  return stats.count ?? null;
}

/** An aggregation answer of one metric and no group as a time series answers it: a point a bucket,
 * its value as a series' point has it (cellValue), its unit as the answer names it (percent keeps
 * the 0..100 axis, hours their suffix). */
function seriesOfAggregation(answer, metric) {
  return {
    metric,
    unit: answer.units?.[metric] || "",
    granularity: answer.granularity,
    timezone: answer.timezone,
    points: answer.rows.map((row) => {
      const stats = row[metric] || {};
      const { count = 0, min = null, max = null } = stats;
      return { bucket: row.bucket, value: cellValue(stats), count, min, max };
    }),
  };
}

/** Chart lines (one per group, or avg and each percentile) and table rows of an aggregation answer. */
function fromAggregation(answer, metric) {
  const stats = ["count", "avg", "min", "max", ...answer.percentiles.map((p) => `p${p}`)]
    .filter((name) => answer.rows.some((row) => name in (row[metric] || {})));
  const groupOf = (row) => Object.values(row.group).map((v) => v ?? "(none)").join(" · ") || "all";
  const times = [...new Set(answer.rows.map((row) => row.bucket))].sort((a, b) => Date.parse(a) - Date.parse(b));
  // A counting metric's cells have no mean: its value is a number of tickets (the "value" column).
  const counting = !answer.rows.some((row) => "avg" in (row[metric] || {}));
  const lines = [];
  if (answer.group_by.length) {
    const groups = [...new Set(answer.rows.map(groupOf))];
    for (const group of groups) {
      const byTime = new Map(answer.rows.filter((r) => groupOf(r) === group)
        .map((r) => [r.bucket, cellValue(r[metric])]));
      lines.push({ label: group, values: times.map((t) => byTime.get(t) ?? null) });
    }
  } else if (counting) {
    const byTime = new Map(answer.rows.map((r) => [r.bucket, cellValue(r[metric])]));
    lines.push({ label: "value", values: times.map((t) => byTime.get(t) ?? null) });
  } else {
    for (const stat of stats.filter((s) => s !== "count" && s !== "min" && s !== "max")) {
      const byTime = new Map(answer.rows.map((r) => [r.bucket, r[metric][stat] ?? null]));
      lines.push({ label: stat, values: times.map((t) => byTime.get(t) ?? null) });
    }
  }
  const rows = answer.rows.map((row) => [
    ...(answer.group_by.length ? [groupOf(row)] : []),
    fmt.bucket(row.bucket || "", answer.granularity),
    ...(counting ? [cellValue(row[metric])] : []),
    ...stats.map((stat) => row[metric]?.[stat] ?? null),
  ]);
  return {
    unit: answer.units?.[metric] || (counting ? "tickets" : ""),
    times,
    lines,
    columns: [...(answer.group_by.length ? ["group"] : []), "bucket", ...(counting ? ["value"] : []), ...stats],
    rows,
  };
}

function drawTable(table, view) {
  const head = h("tr", {}, view.columns.map((c) => h("th", { scope: "col" }, c)));
  const body = view.rows.map((row) => h("tr", {}, row.map((cell) =>
    h("td", {}, typeof cell === "number" ? fmt.number(cell, Number.isInteger(cell) ? "count" : "") : cell ?? "–"))));
  // An aggregation with no matching rows answers none: the table says so, as the chart does.
  if (!body.length) {
    body.push(h("tr", {}, h("td", { colspan: view.columns.length, class: "empty" }, "No data in this range")));
  }
  table.replaceChildren(h("thead", {}, head), h("tbody", {}, body));
}

function option(value, label = value) {
  return h("option", { value }, label);
}

/** The form's controls, built from the API document. */
function buildForm(form, spec) {
  form.metric.replaceChildren(...spec.seriesMetrics.map((m) => option(m)));
  form.granularity.replaceChildren(...spec.granularities.map((g) => option(g)));
  const clocks = spec.clocks;
  document.getElementById("clock-field").hidden = !clocks.length;
  form.clock.replaceChildren(option("", "(default)"), ...clocks.map((c) => option(c)));
  form.group_by.replaceChildren(option("", "(none)"), ...spec.dimensions.map((d) => option(d)));
  const fieldset = document.getElementById("filters");
  for (const dimension of spec.dimensions) {
    const values = spec.valuesOf(dimension);
    const group = h("div", { class: "filter-group", dataset: { dimension } }, h("span", { class: "name" }, dimension));
    if (values.length) {
      for (const value of values) {
        group.append(h("label", {}, h("input", { type: "checkbox", name: `f-${dimension}`, value }), value));
      }
    } else {
      group.append(h("input", {
        type: "text", name: `f-${dimension}`, placeholder: 'a, b, "c, d"', size: 14,
        "aria-label": `${dimension} filter`, "aria-describedby": "filters-hint",
      }));
    }
    fieldset.append(group);
  }
}

/** The Schedule field is shown with the business clock only: the calendar clock counts every hour. */
function showScheduleField(form) {
  document.getElementById("schedule-field").hidden = !isBusiness(form.clock.value);
}

function showState(form, state, spec) {
  for (const name of FIELDS) {
    form[name].value = state[name];
  }
  chooseSchedule(form.schedule_id, state.schedule_id);
  showScheduleField(form);
  for (const dimension of spec.dimensions) {
    const chosen = parseValues(state.filters[dimension] || "").map(String);
    for (const input of form.querySelectorAll(`[name="f-${dimension}"]`)) {
      if (input.type === "checkbox") input.checked = chosen.includes(input.value);
      else input.value = state.filters[dimension] || "";
    }
  }
}

function readState(form, spec) {
  const state = {};
  for (const name of FIELDS) {
    state[name] = form[name].value.trim();
  }
  state.schedule_id = isBusiness(state.clock) ? form.schedule_id.value : "";
  state.filters = {};
  for (const dimension of spec.dimensions) {
    const inputs = [...form.querySelectorAll(`[name="f-${dimension}"]`)];
    // A checkbox is one value as it stands; a box is a list as a query string writes one.
    const values = inputs.flatMap((i) => (i.type === "checkbox" ? (i.checked ? [i.value] : []) : parseValues(i.value)));
    if (values.length) state.filters[dimension] = writeValues(values);
  }
  return state;
}

async function main() {
  const specLoading = Spec.start();
  const page = await startPage("explorer");
  if (!page) return;
  const [spec, schedules] = await Promise.all([specLoading, loadSchedules(page.api)]);
  const form = document.getElementById("query");
  buildForm(form, spec);
  fillSchedules(form.schedule_id, schedules);
  let state = stateFromUrl(spec, page.session.user?.timezone);
  showState(form, state, spec);
  const chartEl = document.getElementById("chart");
  const chart = new LineChart(chartEl, {});
  const jobs = new Jobs(page.api, page.live);
  // None while the query is none (queryProblem): nothing to ask, show or export.
  let request = queryProblem(state, spec) ? null : buildRequest(state, spec);
  bindExport(document.getElementById("export"), {
    api: page.api,
    jobs,
    describe: () => {
      const problem = queryProblem(state, spec);
      if (problem) throw new Error(problem);
      return { dataset: request.dataset, query: request.exportQuery };
    },
  });
  const table = document.getElementById("table");
  const curl = document.getElementById("curl");
  const urlNote = document.getElementById("url-note");

  const begin = latestOnly();
  const run = async () => {
    const current = begin();
    const problem = queryProblem(state, spec);
    if (problem) {
      // A range (or percentiles) that is none, from the URL or the form: said, nothing asked, and no
      // chart, table or curl line of another query left under it.
      showError(problem);
      request = null;
      setText(curl, "");
      chart.clear(`No chart: ${problem}`);
      table.replaceChildren();
      document.body.dataset.refused = String(Number(document.body.dataset.refused || 0) + 1);
      return;
    }
    request = buildRequest(state, spec);
    setText(curl, curlLine(request));
    const grouped = request.view === "aggregation";
    if (request.path === AGGREGATIONS && !spec.aggregationMetrics.includes(state.metric)) {
      showError(grouped
        ? `group-by and percentiles are not available for ${state.metric}`
        : `${state.metric} cannot be asked with filters this long: fewer filter values`, { stale: true });
      return;
    }
    try {
      let answer = await page.api.request(request.method, request.path, { query: request.query, body: request.body });
      if (answer.job_id) answer = (await jobs.follow(answer.job_id, () => null)).result;
      if (!current()) return;
      if (request.view === "series-by-aggregation") answer = seriesOfAggregation(answer, state.metric);
      const view = grouped ? fromAggregation(answer, state.metric) : fromSeries(answer);
      setText(document.getElementById("zone"), answer.timezone);
      setText(document.getElementById("chart-title"), `${state.metric}${view.unit ? ` (${view.unit})` : ""}`);
      chart.update(view.times, view.lines, { unit: view.unit, zone: answer.timezone, granularity: state.granularity });
      drawTable(table, view);
      showError(null);
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (error) {
      if (current()) showError(error.message, { stale: true });
    }
  };
  const rerun = debounce(run, RERUN_AFTER_MS);
  const showUrlNote = (shown) => {
    urlNote.hidden = !shown;
    setText(urlNote, shown
      ? "This query is too long to keep in the page's address, so it cannot be bookmarked or shared: "
        + "the address still holds the query before it, which a reload shows. The curl line above asks this one."
      : "");
  };
  // A query run from the form is a step of the history; Enter in a box runs it too (submit).
  const query = () => {
    state = readState(form, spec);
    showScheduleField(form);
    // A query that is none is said, not written into the URL: the URL keeps the last query shown. So is
    // one too long for an address (it would not load again from a bookmark, a reload or Back): the
    // page says it cannot be kept.
    const search = stateToSearch(state);
    const problem = queryProblem(state, spec);
    const kept = !tooLong(location.pathname.length + search.length);
    if (!problem && kept && search !== location.search) history.pushState(null, "", search);
    showUrlNote(!problem && !kept);
    run();
  };
  form.addEventListener("change", query);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    query();
  });
  // Back and Forward: the controls and results of the query of that step.
  window.addEventListener("popstate", () => {
    state = stateFromUrl(spec, page.session.user?.timezone);
    showState(form, state, spec);
    showUrlNote(false);
    run();
  });
  page.live.on("metric_update", (message) => {
    if ((message.data.metrics || []).includes(state.metric)) rerun();
  });
  await run();
}

main().catch(pageFailed);
