// The overview's tiles and panels, drawn from a data source: the API for a signed-in page, the
// embed link's reads for an embedded one.
import { LineChart, bars } from "./charts.js";
import { h, setText } from "./dom.js";
import * as fmt from "./format.js";
import { TILES, availablePanels, availableSeriesTiles } from "./panels.js";

const PRIORITY_ORDER = ["urgent", "high", "normal", "low"];

/**
 * `source` answers dashboard(range), distribution(field, range, dashboard) and
 * series(metric, range, dashboard) with the API's shapes; `metrics` are those the API serves.
 * The panels are laid out when `metrics` (or a promise of them) is known; the tiles at once.
 */
export class OverviewView {
  #tiles = new Map();
  #seriesTiles = new Map();
  #panels = new Map();
  #charts = new Map();
  #painted = false;

  constructor({ tiles, panels }, source, metrics, { onFirstPaint = null } = {}) {
    this.source = source;
    this.onFirstPaint = onFirstPaint;
    this.laidOut = Promise.resolve(metrics).then((served) => this.#layOut(tiles, panels, served));
    for (const tile of TILES) this.#tiles.set(tile.id, OverviewView.#tile(tiles, tile));
  }

  static #tile(tiles, tile) {
    const value = h("div", { class: "tile-value" }, "…");
    const previous = h("div", { class: "tile-previous" });
    const el = h("div", { class: "tile", id: `tile-${tile.id}`, title: tile.note || false },
      h("div", { class: "tile-label" }, tile.label), value, previous);
    tiles.append(el);
    return { tile, el, value, previous };
  }

  #layOut(tiles, panels, metrics) {
    for (const tile of availableSeriesTiles(metrics)) this.#seriesTiles.set(tile.id, OverviewView.#tile(tiles, tile));
    for (const panel of availablePanels(metrics)) {
      const body = h("div", { class: panel.kind === "series" ? "chart" : "bars-host" });
      const title = h("h2", {}, panel.title);
      const el = h("section", { class: "panel", id: `panel-${panel.id}`, dataset: { kind: panel.kind } },
        title, body);
      panels.append(el);
      this.#panels.set(panel.id, { panel, el, body, title });
    }
  }

  /** Fetch and draw everything for `range`; resolves with the dashboard answer once all is drawn. */
  async load(range) {
    // The dashboard and the API document are fetched side by side.
    const [dashboard] = await Promise.all([this.source.dashboard(range), this.laidOut]);
    this.#drawTiles(dashboard);
    // A metric's series is asked for once per load, whether a tile, a panel or both show it.
    const asked = new Map();
    const series = (metric) => {
      if (!asked.has(metric)) asked.set(metric, this.source.series(metric, range, dashboard));
      return asked.get(metric);
    };
    const pending = [];
    for (const shown of this.#seriesTiles.values()) {
      pending.push(series(shown.tile.metric).then((answer) => this.#drawSeriesTile(shown, answer)));
    }
    for (const { panel, body } of this.#panels.values()) {
      if (panel.kind === "series") pending.push(this.#drawSeries(panel, body, dashboard, series));
      else if (panel.kind === "sla") this.#drawSla(body, dashboard);
      else if (panel.fromDashboard) this.#drawDistribution(body, dashboard.distributions[panel.field]);
      else {
        pending.push(this.source.distribution(panel.field, range, dashboard)
          .then((answer) => this.#drawDistribution(body, answer)));
      }
    }
    this.#firstPaint();
    await Promise.all(pending);
    return dashboard;
  }

  #firstPaint() {
    if (this.#painted) return;
    this.#painted = true;
    this.onFirstPaint?.();
  }

  #drawTiles(dashboard) {
    for (const { tile, el, value, previous } of this.#tiles.values()) {
      const kpi = tile.kpi ? dashboard.kpis[tile.kpi] : null;
      const current = kpi ? kpi.value : tile.value(dashboard);
      const text = tile.percent ? fmt.percent(current) : fmt.number(current, tile.unit);
      if (value.textContent !== "…" && value.textContent !== text) {
        el.classList.remove("flash");
        void el.offsetWidth; // restart the animation
        el.classList.add("flash");
      }
      setText(value, text);
      el.dataset.value = current ?? "";
      if (!kpi) {
        setText(previous, tile.note || "");
        continue;
      }
      const change = h("span", { class: "change" }, fmt.change(kpi.change_pct));
      if (kpi.change_pct) {
        const better = (kpi.change_pct > 0) !== Boolean(tile.lowerIsBetter);
        change.classList.add(better ? "up" : "down");
      }
      previous.replaceChildren(`previous ${fmt.number(kpi.previous, tile.unit)} · `, change);
    }
  }

  #chart(panelId, body, zone) {
    if (!this.#charts.has(panelId)) this.#charts.set(panelId, new LineChart(body, { zone }));
    return this.#charts.get(panelId);
  }

  #drawSeriesTile({ tile, el, value, previous }, answer) {
    const current = tile.value(answer);
    setText(value, tile.percentage ? fmt.percentage(current) : fmt.number(current, tile.unit));
    el.dataset.value = current ?? "";
    setText(previous, tile.note || "");
  }

  async #drawSeries(panel, body, dashboard, series) {
    const chart = this.#chart(panel.id, body, dashboard.timezone);
    const own = panel.series.filter((s) => s.fromDashboard);
    const days = dashboard.ticket_count_series.map((p) => p.bucket);
    const drawn = own.map((s) => ({ label: s.label, values: dashboard.ticket_count_series.map((p) => p.count) }));
    const unit = "tickets";
    if (drawn.length) chart.update(days, drawn, { unit, zone: dashboard.timezone });
    const fetched = panel.series.filter((s) => !s.fromDashboard);
    if (!fetched.length) return;
    const answers = await Promise.all(fetched.map((s) => series(s.metric)));
    const times = days.length ? days : answers[0].points.map((p) => p.bucket);
    const lines = [...drawn];
    answers.forEach((answer, i) => {
      const byBucket = new Map(answer.points.map((p) => [p.bucket, p.value]));
      lines.push({ label: fetched[i].label, values: times.map((t) => byBucket.get(t) ?? null) });
    });
    chart.update(times, lines, { unit: answers[0].unit, zone: dashboard.timezone });
  }

  #drawSla(body, dashboard) {
    const byPriority = dashboard.sla.by_priority;
    const priorities = PRIORITY_ORDER.filter((p) => p in byPriority)
      .concat(Object.keys(byPriority).filter((p) => !PRIORITY_ORDER.includes(p)));
    const rows = priorities.map((priority) => {
      const { first_response: first, resolution } = byPriority[priority];
      return {
        label: priority,
        value: first.compliance,
        second: resolution.compliance,
        text: `${fmt.percent(first.compliance)} / ${fmt.percent(resolution.compliance)}`,
      };
    });
    bars(body, rows, { legend: ["First response", "Resolution"] });
  }

  #drawDistribution(body, distribution) {
    const rows = distribution.values.map((v) => ({
      label: v.value ?? "(none)",
      value: v.count,
      text: `${fmt.number(v.count, "count")} · ${fmt.percent(v.share)}`,
    }));
    bars(body, rows);
  }
}
