// The embedded view: read-only, its filters locked by the link (the server refuses any other), drawn
// from the link's own reads; it redraws every minute, as it holds no session for a live socket.
import { Api, latestOnly } from "../api.js";
import { LineChart } from "../charts.js";
import { h, setText, showError } from "../dom.js";
import { OverviewView } from "../overview-view.js";
import { Spec } from "../spec.js";

const REDRAW_EVERY_MS = 60_000;

function lockedChips(filters) {
  const chips = Object.entries(filters).map(([name, values]) =>
    h("span", { class: "chip", dataset: { filter: name } }, `${name}: ${values.map((v) => v ?? "unassigned").join(", ")}`));
  document.getElementById("locked").replaceChildren(...(chips.length ? chips : [h("span", { class: "chip" }, "all tickets")]));
}

async function main() {
  const form = document.getElementById("range");
  const { view, metric } = form.dataset;
  const base = `${location.pathname}/api`;
  const api = new Api(null);
  const params = new URLSearchParams(location.search);
  form.period.value = params.get("period") || "30d";
  form.granularity.value = params.get("granularity") || "daily";
  const choice = () => ({ period: form.period.value });

  let draw;
  if (view === "overview") {
    const spec = await Spec.load();
    const overview = new OverviewView(
      { tiles: document.getElementById("tiles"), panels: document.getElementById("panels") },
      {
        dashboard: () => api.get(`${base}/dashboard`, choice()),
        distribution: (field) => api.get(`${base}/distribution/${field}`, choice()),
        series: (name) => api.get(`${base}/time-series/${name}`, { ...choice(), granularity: "daily" }),
      },
      spec.seriesMetrics,
    );
    draw = (current) => overview.load(undefined, current);
  } else {
    form.querySelector(".granularity").hidden = false;
    const title = h("h2", {}, metric);
    const chartEl = h("div", { class: "chart", id: "chart" });
    document.getElementById("panels").append(h("section", { class: "panel wide" }, title, chartEl));
    const chart = new LineChart(chartEl, {});
    draw = async (current) => {
      const granularity = form.granularity.value;
      const answer = await api.get(`${base}/time-series/${metric}`, { ...choice(), granularity });
      if (!current()) return null;
      setText(title, `${answer.metric} (${answer.unit})`);
      chart.update(answer.points.map((p) => p.bucket), [{ label: answer.metric, values: answer.points.map((p) => p.value) }],
        { unit: answer.unit, zone: answer.timezone, granularity });
      return answer;
    };
  }
  // Only the latest redraw's answer is shown (a slow one for an earlier choice is dropped).
  const begin = latestOnly();
  const redraw = async () => {
    const current = begin();
    try {
      const answer = await draw(current);
      if (!answer || !current()) return;
      lockedChips(answer.filters);
      setText(document.getElementById("zone"), answer.timezone);
      showError(null);
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (error) {
      if (current()) showError(error.message, { stale: true });
    }
  };
  form.addEventListener("change", () => {
    const search = new URLSearchParams(choice());
    if (view !== "overview") search.set("granularity", form.granularity.value);
    history.replaceState(null, "", `?${search}`);
    redraw();
  });
  setInterval(redraw, REDRAW_EVERY_MS);
  await redraw();
}

main();
