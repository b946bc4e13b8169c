// What the overview shows, as tables: each tile and panel names where its numbers come from. A
// panel whose metric the API does not serve yet is left out; when the metric appears in the API's
// document, the panel appears with it. A tile of a KPI the dashboard answer does not hold is left out.

/**
 * The tiles: a KPI of GET /analytics/dashboard (value, previous period, change) or one of its figures;
 * `percent` for a fraction 0..1, `percentage` for a value already 0..100; `signed` for a score of
 * -1..1, whose change is shown as a difference (a percentage of a score near zero means nothing); an
 * `optional` tile shows once an answer holds its KPI.
 */
export const TILES = [
  { id: "tickets", label: "Tickets created", kpi: "ticket_count", unit: "tickets" },
  { id: "response", label: "Avg first response", kpi: "avg_response_time", unit: "hours", lowerIsBetter: true },
  { id: "resolution", label: "Avg resolution", kpi: "avg_resolution_time", unit: "hours", lowerIsBetter: true },
  { id: "sentiment", label: "Avg sentiment", kpi: "avg_sentiment_score", unit: "score", signed: true },
  { id: "backlog", label: "Open backlog", unit: "tickets", value: (d) => d.backlog.count,
    note: "created in the range, open, pending or on hold now" },
  { id: "sla-first", label: "First-response SLA", percent: true,
    value: (d) => d.sla.overall.first_response.compliance },
  { id: "sla-resolution", label: "Resolution SLA", percent: true,
    value: (d) => d.sla.overall.resolution.compliance },
  { id: "csat", label: "CSAT", kpi: "csat_pct", percentage: true, optional: true,
    note: "good ratings (4 or 5) among ratings given" },
];

/**
 * The panels. kind "series": daily lines, each series a metric of GET /analytics/time-series, or the
 * dashboard's own daily series named by `fromDashboard` when its answer holds it; "sla": compliance by
 * priority from the dashboard; "distribution": a field's current values, from the dashboard or GET
 * /analytics/distribution.
 */
export const PANELS = [
  { id: "volume", kind: "series", title: "Tickets per day", series: [
    { metric: "ticket_count", label: "Created", fromDashboard: "ticket_count_series" },
    { metric: "solved", label: "Solved" },
  ] },
  { id: "backlog", kind: "series", title: "Backlog over time", series: [
    { metric: "backlog", label: "Backlog", fromDashboard: "backlog_series" },
  ] },
  { id: "csat", kind: "series", title: "Customer satisfaction (% good ratings)", series: [
    { metric: "csat", label: "CSAT" },
  ] },
  { id: "sla", kind: "sla", title: "SLA compliance by priority" },
  { id: "status", kind: "distribution", field: "status", title: "Status", fromDashboard: true },
  { id: "priority", kind: "distribution", field: "priority", title: "Priority", fromDashboard: true },
  { id: "channel", kind: "distribution", field: "channel", title: "Channel" },
];

/** The panels the API can fill, each with only the series it serves. */
export function availablePanels(metrics) {
  const served = new Set(metrics);
  return PANELS.flatMap((panel) => {
    if (panel.kind !== "series") return [panel];
    const series = panel.series.filter((s) => served.has(s.metric));
    return series.length ? [{ ...panel, series }] : [];
  });
}
