// What the overview shows, as tables: each tile and panel names where its numbers come from. A
// panel whose metric the API does not serve yet is left out; when the metric appears in the API's
// document, the panel appears with it.

/** The tiles: a KPI of GET /analytics/dashboard (value, previous period, change) or one of its figures. */
export const TILES = [
  { id: "tickets", label: "Tickets created", kpi: "ticket_count", unit: "tickets" },
  { id: "response", label: "Avg first response", kpi: "avg_response_time", unit: "hours", lowerIsBetter: true },
  { id: "resolution", label: "Avg resolution", kpi: "avg_resolution_time", unit: "hours", lowerIsBetter: true },
  { id: "sentiment", label: "Avg sentiment", kpi: "avg_sentiment_score", unit: "score" },
  { id: "backlog", label: "Open backlog", unit: "tickets", value: (d) => d.backlog.count,
    note: "open, pending or on hold now" },
  { id: "sla-first", label: "First-response SLA", percent: true,
    value: (d) => d.sla.overall.first_response.compliance },
  { id: "sla-resolution", label: "Resolution SLA", percent: true,
    value: (d) => d.sla.overall.resolution.compliance },
];

/** Share of good ratings among all of a series' ratings: each point's percentage weighted by its count. */
function pooledPercentage(answer) {
  const rated = answer.points.reduce((sum, p) => sum + (p.value === null ? 0 : p.count), 0);
  if (!rated) return null;
  return answer.points.reduce((sum, p) => sum + (p.value === null ? 0 : p.value * p.count), 0) / rated;
}

/**
 * Tiles over the whole range of a metric of GET /analytics/time-series (daily), shown when the API
 * document lists the metric; `value(answer)` is the tile's number.
 */
export const SERIES_TILES = [
  { id: "csat", label: "CSAT", metric: "csat", percentage: true, value: pooledPercentage,
    note: "good ratings (4 or 5) among ratings given" },
];

/**
 * The panels. kind "series": daily lines, each series a metric of GET /analytics/time-series (or the
 * dashboard's own daily ticket_count); "sla": compliance by priority from the dashboard;
 * "distribution": a field's current values, from the dashboard or GET /analytics/distribution.
 */
export const PANELS = [
  { id: "volume", kind: "series", title: "Tickets per day", series: [
    { metric: "ticket_count", label: "Created", fromDashboard: true },
    { metric: "solved", label: "Solved" },
  ] },
  { id: "backlog", kind: "series", title: "Backlog over time", series: [
    { metric: "backlog", label: "Backlog" },
  ] },
  { id: "csat", kind: "series", title: "Customer satisfaction (% good ratings)", series: [
    { metric: "csat", label: "CSAT" },
  ] },
  { id: "sla", kind: "sla", title: "SLA compliance by priority" },
  { id: "status", kind: "distribution", field: "status", title: "Status", fromDashboard: true },
  { id: "priority", kind: "distribution", field: "priority", title: "Priority", fromDashboard: true },
  { id: "channel", kind: "distribution", field: "channel", title: "Channel" },
];

/** The series tiles the API can fill. */
export function availableSeriesTiles(metrics) {
  const served = new Set(metrics);
  return SERIES_TILES.filter((tile) => served.has(tile.metric));
}

/** The panels the API can fill, each with only the series it serves. */
export function availablePanels(metrics) {
  const served = new Set(metrics);
  return PANELS.flatMap((panel) => {
    if (panel.kind !== "series") return [panel];
    const series = panel.series.filter((s) => served.has(s.metric));
    return series.length ? [{ ...panel, series }] : [];
  });
}
