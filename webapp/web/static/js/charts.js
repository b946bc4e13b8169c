// Charts: uPlot (vendored, loaded before the modules) for lines over time; plain bars for categories.
import { h, setText } from "./dom.js";
import * as fmt from "./format.js";

// Gridline steps of a count axis: 1, 2, 5, 10, 20, 50, ... (uPlot picks the first that spaces them).
const WHOLE_STEPS = Array.from({ length: 10 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

// Sixteen colours, then the same sixteen dashed: every series of a chart of up to 32 has its own look.
const COLORS = [
  "#2f6fdf", "#e07a1f", "#1b8a4b", "#9b3fc0", "#c23a32", "#11829a", "#7a6b20", "#5d6678",
  "#d6457f", "#4a9e1a", "#8c5a2b", "#1f3f9a", "#c79a00", "#6b2d5c", "#00a37a", "#a0a0a0",
];
const DASHES = [null, [6, 4], [2, 3], [10, 3, 2, 3]];
const DAY = 86_400;
// Time axis steps of daily or coarser buckets: whole days, so every tick is a date.
const DAY_STEPS = [1, 2, 7, 14, 30, 60, 90, 180, 365].map((d) => d * DAY);

/** The indices of values with no value either side (drawn as points: a line of one value is nothing). */
function isolated(values) {
  const found = [];
  values.forEach((v, i) => {
    if (v !== null && v !== undefined && values[i - 1] == null && values[i + 1] == null) found.push(i);
  });
  return found;
}

/** Tick labels of the time axis in `zone`: dates for daily or coarser buckets; hours on a 24-hour
 * clock for hourly ones, with the date at a day's first tick. */
function timeLabels(zone, granularity, shown) {
  const date = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
  const time = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  return (_, ticks) => {
    let lastDay = null;
    return shown(ticks.map((t) => {
      const when = new Date(t * 1000);
      const day = date.format(when);
      if (granularity !== "hourly") return day;
      const label = day === lastDay ? time.format(when) : `${time.format(when)}\n${day}`;
      lastDay = day;
      return label;
    }));
  };
}
const HEIGHT = 240;

/** Lines over time in the organization's zone; `update` redraws, keeping the chart when the series stay. */
export class LineChart {
  #plot = null;
  #shape = "";

  constructor(container, { unit = "", zone = "UTC", granularity = "daily" } = {}) {
    this.container = container;
    this.unit = unit;
    this.zone = zone;
    this.granularity = granularity;
    new ResizeObserver(() => this.#plot?.setSize(this.#size())).observe(container);
  }

  #size() {
    return { width: Math.max(200, this.container.clientWidth), height: HEIGHT };
  }

  /** `times`: bucket starts (ISO); `series`: [{label, values}] aligned with them. */
  update(times, series, { unit = this.unit, zone = this.zone, granularity = this.granularity } = {}) {
    const shape = JSON.stringify([series.map((s) => s.label), unit, zone, granularity]);
    const data = [times.map((t) => Date.parse(t) / 1000), ...series.map((s) => s.values)];
    this.container.dataset.points = String(times.length);
    this.container.dataset.total = String(
      series.reduce((sum, s) => sum + s.values.reduce((a, v) => a + (v ?? 0), 0), 0),
    );
    if (!times.length || !series.length) {
      this.clear("No data in this range");
      return;
    }
    if (this.#plot && shape === this.#shape) {
      this.#plot.setData(data);
      this.#oneBucket(data[0]);
      return;
    }
    this.unit = unit;
    this.zone = zone;
    this.granularity = granularity;
    this.#plot?.destroy();
    this.container.replaceChildren();
    this.#shape = shape;
    this.#plot = new window.uPlot(this.#options(series), data, this.container);
    this.#oneBucket(data[0]);
  }

  /** No chart, and `message` in its place (no data, or no range to draw). */
  clear(message) {
    this.#plot?.destroy();
    this.#plot = null;
    this.#shape = "";
    this.container.dataset.points = "0";
    this.container.dataset.total = "0";
    this.container.replaceChildren(h("p", { class: "empty" }, message));
  }

  /** One bucket (a one-day range): half a day either side of it, not uPlot's guess of a span (years). */
  #oneBucket(times) {
    if (times.length === 1) this.#plot.setScale("x", { min: times[0] - 43_200, max: times[0] + 43_200 });
  }

  #options(series) {
    const { unit, zone, granularity } = this;
    // What the canvas shows, on the container (what a test can read of a canvas).
    const labelled = (labels) => {
      this.container.dataset.timeLabels = JSON.stringify(labels);
      return labels;
    };
    return {
      ...this.#size(),
      tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), zone),
      cursor: { drag: { x: false, y: false } },
      // The seconds the time axis spans, on the container (what a test can read of a canvas).
      hooks: {
        setScale: [(u, key) => {
          if (key === "x") this.container.dataset.span = String(u.scales.x.max - u.scales.x.min);
          if (key === "y") this.container.dataset.yRange = JSON.stringify([u.scales.y.min, u.scales.y.max]);
        }],
      },
      // A percentage is on 0..100 whatever its values: never an axis running to 200.
      scales: { x: { time: true }, ...(unit === "percent" ? { y: { range: () => [0, 100] } } : {}) },
      // Counts are whole: their gridlines only at whole steps, so no label is a rounded 2.5.
      axes: [granularity === "hourly"
        ? { values: timeLabels(zone, granularity, labelled), space: 60 }
        : { values: timeLabels(zone, granularity, labelled), incrs: DAY_STEPS, space: 80 }, unit === "tickets"
        ? { incrs: WHOLE_STEPS, values: (_, ticks) => ticks.map((v) => fmt.number(v, "count")) }
        : { values: (_, ticks) => ticks.map((v) => fmt.number(v, "")) }],
      series: [
        { value: (_, ts) => (ts === null ? "" : fmt.instant(ts, zone, granularity)) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          dash: DASHES[Math.floor(i / COLORS.length) % DASHES.length] ?? undefined,
          width: 2,
          spanGaps: false,
          // A line needs two values: a value with none either side is drawn as a point.
          points: {
            show: (u) => (granularity !== "hourly" && granularity !== "daily") || u.data[0].length < 3,
            filter: (u, index, shown) => {
              const found = isolated(u.data[index]);
              this.container.dataset[`isolated${index}`] = String(found.length);
              return shown || !found.length ? null : found;
            },
          },
          value: (_, v) => fmt.number(v, unit),
        })),
      ],
    };
  }
}

/** Horizontal bars for categories: rows of {label, value, text}, and an optional second value. */
export function bars(container, rows, { legend = null, scale = null } = {}) {
  // `scale`: the value a full bar stands for (100 for percentages); by default the largest row's.
  const max = scale ?? Math.max(0, ...rows.flatMap((r) => [r.value ?? 0, r.second ?? 0]));
  const children = [];
  if (legend) {
    children.push(h("div", { class: "legend" }, legend.map((label, i) => h("span", {},
      h("span", { class: `swatch ${i ? "second" : "first"}` }), label))));
  }
  if (!rows.length) children.push(h("p", { class: "empty" }, "No tickets in this range"));
  const list = h("div", { class: "bars" });
  for (const row of rows) {
    const track = h("div", { class: "bar-track" });
    for (const [value, cls] of [[row.value, "bar-fill"], [row.second, "bar-fill second"]]) {
      if (value === undefined) continue;
      const fill = h("div", { class: cls });
      // The CSSOM, not a style attribute: the Content-Security-Policy allows no inline style markup.
      fill.style.width = `${max ? ((value ?? 0) / max) * 100 : 0}%`;
      if (row.second !== undefined) fill.style.height = "50%";
      track.append(fill);
    }
    const value = h("span", { class: "bar-value" });
    setText(value, row.text);
    list.append(h("div", { class: "bar-row", dataset: { key: row.label } },
      h("span", { class: "bar-label", title: row.label }, row.label), track, value));
  }
  children.push(list);
  container.replaceChildren(...children);
}
