// The business-hours schedule a page's durations are counted on (schedule_id, with clock=business):
// a select of the organization's schedules, the default marked, "(default)" sending none (the API then
// counts on the default schedule). The calendar clock never sends one: the API refuses it there.
import { h } from "./dom.js";

const BUSINESS = "business";

/** The organization's schedules ([] when they cannot be read: the select still offers the default
 * and keeps the URL's own choice, and the page's request says what the API makes of it). */
export async function loadSchedules(api) {
  try {
    return (await api.get("/api/v1/schedules")).items;
  } catch {
    return [];
  }
}

function option(value, label) {
  return h("option", { value }, label);
}

/** Fill `select` with "(default)" and each schedule by name, the default one marked. */
export function fillSchedules(select, schedules) {
  select.replaceChildren(option("", "(default)"),
    ...schedules.map((s) => option(String(s.id), s.default ? `${s.name} (the default)` : s.name)));
}

/** Show schedule `id` chosen; an id the list lacks (deleted since, or the list not read) gets an
 * option of its own, so that what the URL names is what the select shows and the page sends. */
export function chooseSchedule(select, id) {
  if (id && ![...select.options].some((o) => o.value === id)) select.append(option(id, `schedule ${id}`));
  select.value = id || "";
}

/** Whether `clock` counts in a schedule's open hours (the Schedule field is shown only then). */
export function isBusiness(clock) {
  return clock === BUSINESS;
}

/** The schedule_id a query string sends: only with the business clock. */
export function scheduleQuery(clock, id) {
  return isBusiness(clock) && id ? { schedule_id: id } : {};
}

/** The schedule_id a JSON body sends: a number (the body is read strictly); text that is no id is
 * sent as written, for the API to refuse in its own words rather than the page to drop it. */
export function scheduleBody(clock, id) {
  const query = scheduleQuery(clock, id);
  return query.schedule_id && /^\d+$/.test(query.schedule_id) ? { schedule_id: Number(query.schedule_id) } : query;
}
