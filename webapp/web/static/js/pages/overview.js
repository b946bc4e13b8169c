// The overview: KPI tiles against the previous period, volume, SLA by priority and distributions,
// redrawn when a live event says a ticket changed.
import { latestOnly } from "../api.js";
import { pageFailed, setText, showError } from "../dom.js";
import { OverviewView } from "../overview-view.js";
import { Range, bindRangeForm, urlRangeProblem } from "../range.js";
import { debounce, startPage } from "../shell.js";
import { Spec } from "../spec.js";

// A burst of ticket changes is one redraw.
const REDRAW_AFTER_MS = 250;

function apiSource(api) {
  return {
    dashboard: (range) => api.get("/api/v1/analytics/dashboard", range.query()),
    distribution: (field, range, dashboard) =>
      api.get(`/api/v1/analytics/distribution/${field}`, { start: dashboard.start, end: dashboard.end }),
    series: (metric, range, dashboard) =>
      api.get(`/api/v1/analytics/time-series/${metric}`, {
        start: dashboard.start, end: dashboard.end, granularity: "daily",
      }),
  };
}

async function main() {
  const specLoading = Spec.start();
  const page = await startPage("overview");
  if (!page) return;
  // A date the URL leaves out is filled in as the explorer fills it (To: the organization's today).
  const zone = page.session.user?.timezone;
  let range = Range.fromUrl(zone);
  // A range the URL gets wrong is said, as the explorer says it, rather than another range shown
  // under that URL; a range chosen in the form is always one.
  let problem = urlRangeProblem(zone);
  const view = new OverviewView(
    { tiles: document.getElementById("tiles"), panels: document.getElementById("panels") },
    apiSource(page.api),
    specLoading.then((spec) => spec.seriesMetrics),
    // Marked once the frame holding the tiles and the first chart has been rendered: the task after
    // the next animation frame (the benchmark reads it).
    { onFirstPaint: () => requestAnimationFrame(() => setTimeout(() => performance.mark("dashboard-first-paint"))) },
  );
  // Each draw supersedes those before it: only the latest one's answers are drawn or reported.
  const begin = latestOnly();
  // A draw whose own handling fails (the page's layout never came: the API document did not load)
  // ends in the page's error line, whoever started it (the form, history, a live update).
  const draw = () => drawRange().catch(pageFailed);
  const drawRange = async () => {
    const current = begin();
    if (problem) {
      // Nothing asked, and no figures of another range left under the error.
      showError(problem);
      setText(document.getElementById("range-note"), "");
      await view.clear(`No data: ${problem}`);
      document.body.dataset.refused = String(Number(document.body.dataset.refused || 0) + 1);
      return;
    }
    try {
      const dashboard = await view.load(range, current);
      if (!dashboard) return;
      if (!performance.getEntriesByName("dashboard-complete").length) performance.mark("dashboard-complete");
      setText(document.getElementById("zone"), dashboard.timezone);
      setText(document.getElementById("range-note"),
        `${dashboard.start.slice(0, 10)} to ${dashboard.end.slice(0, 10)} (end excluded)`);
      showError(null);
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (error) {
      if (!current()) return;
      if (view.drawn) {
        // What is on screen is still the range before: said next to the controls, and dimmed.
        showError(error.message, { stale: true });
        return;
      }
      // Nothing drawn yet (the first range asked, refused): the page settles as for a range it
      // refuses itself, rather than tiles and panels left loading.
      showError(error.message);
      setText(document.getElementById("range-note"), "");
      await view.clear(`No data: ${error.message}`);
      if (current()) document.body.dataset.refused = String(Number(document.body.dataset.refused || 0) + 1);
    }
  };
  // Each range chosen is a step of the browser's history: Back shows the range before it.
  const showRange = bindRangeForm(document.getElementById("range"), range, (next) => {
    range = next;
    problem = null;
    history.pushState(null, "", range.search());
    draw();
  });
  window.addEventListener("popstate", () => {
    range = Range.fromUrl(zone);
    problem = urlRangeProblem(zone);
    showRange(range);
    draw();
  });
  const redraw = debounce(draw, REDRAW_AFTER_MS);
  page.live.on("metric_update", redraw);
  // A target passing its breach time changes the SLA figures with no ticket written.
  page.live.on("sla_breach", redraw);
  page.live.on("connected", (message) => {
    if (message.resumed) redraw();
  });
  await draw();
}

main().catch(pageFailed);
