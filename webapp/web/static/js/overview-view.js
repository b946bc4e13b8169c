// The overview's tiles and panels, drawn from a data source: the API for a signed-in page, the
// embed link's reads for an embedded one.
import { LineChart, bars } from "./charts.js";
import { h, setText } from "./dom.js";
import * as fmt from "./format.js";
import { TILES, availablePanels } from "./panels.js";

const PRIORITY_ORDER = ["urgent", "high", "normal", "low"];

/** What a series panel's chart shows, in words: "Tickets per day: daily line chart of Created, Solved". */
function chartLabel(panel) {
  return `${panel.title}: daily line chart of ${panel.series.map((s) => s.label).join(", ")}`;
}

/**
 * `source` answers dashboard(range), distribution(field, range, dashboard) and
 * series(metric, range, dashboard) with the API's shapes; `metrics` are those the API serves.
 * The panels are laid out when `metrics` (or a promise of them) is known; the tiles at once.
 */
export class OverviewView {
  #tiles = new Map();
  #panels = new Map();
  #charts = new Map();
  #painted = false;
  // Whether figures of some range are on the page (false before the first answer and after clear()).
  #drawn = false;

  constructor({ tiles, panels }, source, metrics, { onFirstPaint = null } = {}) {
    this.source = source;
    this.onFirstPaint = onFirstPaint;
    this.laidOut = Promise.resolve(metrics).then((served) => this.#layOut(panels, served));
    this.tilesEl = tiles;
    for (const tile of TILES) {
      const value = h("div", { class: "tile-value" }, "…");
      const previous = h("div", { class: "tile-previous" });
      const el = h("div", { class: "tile", id: `tile-${tile.id}`, title: tile.note || false },
        h("div", { class: "tile-label" }, tile.label), value, previous);
      this.#tiles.set(tile.id, { tile, el, value, previous });
    }
    this.#showTiles(null);
  }

  /** The tiles the answer can fill: an optional KPI it lacks (an older server) leaves its tile out. */
  #showTiles(dashboard) {
    const shown = [...this.#tiles.values()]
      .filter(({ tile }) => !tile.optional || Boolean(dashboard && tile.kpi in dashboard.kpis))
      .map(({ el }) => el);
    const now = [...this.tilesEl.children];
    if (shown.length !== now.length || shown.some((el, i) => el !== now[i])) this.tilesEl.replaceChildren(...shown);
  }

  #layOut(panels, metrics) {
    for (const panel of availablePanels(metrics)) {
      // A chart is a canvas: as the explorer's, an image with words a screen reader says.
      const chart = panel.kind === "series"
        ? { class: "chart", role: "img", "aria-label": chartLabel(panel) }
        : { class: "bars-host" };
      const body = h("div", chart);
      const title = h("h2", {}, panel.title);
      const el = h("section", { class: "panel", id: `panel-${panel.id}`, dataset: { kind: panel.kind } },
        title, body);
      panels.append(el);
      this.#panels.set(panel.id, { panel, el, body, title });
    }
  }

  /** Fetch and draw everything for `range`; resolves with the dashboard answer once all is drawn,
   * or with null when `current()` says another load has begun since (nothing of this one is drawn
   * after that: a late answer for an earlier range never overwrites the range chosen since). */
  async load(range, current = () => true) {
    // The dashboard and the API document are fetched side by side.
    const [dashboard] = await Promise.all([this.source.dashboard(range), this.laidOut]);
    if (!current()) return null;
    this.#drawTiles(dashboard);
    const pending = [];
    for (const { panel, body } of this.#panels.values()) {
      if (panel.kind === "series") pending.push(this.#drawSeries(panel, body, range, dashboard, current));
      else if (panel.kind === "sla") this.#drawSla(body, dashboard);
      else if (panel.fromDashboard) this.#drawDistribution(body, dashboard.distributions[panel.field]);
      else {
        pending.push(this.source.distribution(panel.field, range, dashboard)
          .then((answer) => current() && this.#drawDistribution(body, answer)));
      }
    }
    this.#firstPaint();
    await Promise.all(pending);
    return current() ? dashboard : null;
  }

  /** Whether figures of a range answered earlier are on the page (a failed load leaves them, dimmed). */
  get drawn() {
    return this.#drawn;
  }

  /** Nothing drawn: the tiles empty, the charts and bars replaced by `message` (a range that is none,
   * or one the API refused before anything was drawn). */
  async clear(message) {
    this.#drawn = false;
    this.#showTiles(null);
    for (const { el, value, previous } of this.#tiles.values()) {
      setText(value, "–");
      setText(previous, "");
      el.dataset.value = "";
    }
    await this.laidOut;
    for (const { panel, body } of this.#panels.values()) {
      if (panel.kind === "series") this.#chart(panel.id, body).clear(message);
      else body.replaceChildren(h("p", { class: "empty" }, message));
    }
  }

  #firstPaint() {
    if (this.#painted) return;
    this.#painted = true;
    this.onFirstPaint?.();
  }

  #drawTiles(dashboard) {
    this.#drawn = true;
    this.#showTiles(dashboard);
    for (const { tile, el, value, previous } of this.#tiles.values()) {
      if (tile.optional && !(tile.kpi in dashboard.kpis)) continue;
      const kpi = tile.kpi ? dashboard.kpis[tile.kpi] : null;
      const current = kpi ? kpi.value : tile.value(dashboard);
      const text = tile.percent ? fmt.percent(current) : tile.percentage ? fmt.percentage(current) : fmt.number(current, tile.unit);
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
      const compared = kpi.value !== null && kpi.previous !== null;
      const delta = tile.signed ? (compared ? kpi.value - kpi.previous : null) : kpi.change_pct;
      const words = tile.signed ? fmt.difference(kpi.value, kpi.previous) : fmt.change(kpi.change_pct);
      const change = h("span", { class: "change" }, words);
      const moved = fmt.direction(delta);
      if (moved) change.classList.add((moved > 0) !== Boolean(tile.lowerIsBetter) ? "up" : "down");
      const before = tile.percentage ? fmt.percentage(kpi.previous) : fmt.number(kpi.previous, tile.unit);
      previous.replaceChildren(`previous ${before} · `, change);
    }
  }

  #chart(panelId, body, zone) {
    if (!this.#charts.has(panelId)) this.#charts.set(panelId, new LineChart(body, { zone }));
    return this.#charts.get(panelId);
  }

  async #drawSeries(panel, body, range, dashboard, current) {
    const chart = this.#chart(panel.id, body, dashboard.timezone);
    const own = panel.series.filter((s) => s.fromDashboard && dashboard[s.fromDashboard]);
    const days = dashboard.ticket_count_series.map((p) => p.bucket);
    const drawn = own.map((s) => ({ label: s.label, values: dashboard[s.fromDashboard].map((p) => p.count) }));
    const unit = "tickets";
    if (drawn.length) chart.update(days, drawn, { unit, zone: dashboard.timezone });
    const fetched = panel.series.filter((s) => !own.includes(s));
    if (!fetched.length) return;
    const answers = await Promise.all(fetched.map((s) => this.source.series(s.metric, range, dashboard)));
    if (!current()) return;
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
      // compliance_pct is 0..100, so a full bar is 100 %; compliance (0..1) is the first contract's.
      const firstPct = first.compliance_pct ?? (first.compliance == null ? null : 100 * first.compliance);
      const resolutionPct = resolution.compliance_pct
        ?? (resolution.compliance == null ? null : 100 * resolution.compliance);
      return {
        label: priority,
        value: firstPct,
        second: resolutionPct,
        text: `${fmt.percentage(firstPct)} / ${fmt.percentage(resolutionPct)}`,
      };
    });
    bars(body, rows, { legend: ["First response", "Resolution"], scale: 100 });
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
