// One alert rule on the page: what it watches, its state (ok or firing), its history of transitions
// on demand, and for admins the edit, pause and delete actions. Every value goes in as text.
import { h, setText } from "./dom.js";
import { showValues } from "./filters.js";
import * as fmt from "./format.js";

const HISTORY_LIMIT = 50;
// A delete asks once more on the same button for this long.
const CONFIRM_MS = 4000;

/** The rule's condition in words: "above 10", "change up 20 %", "anomaly score ≥ 3 over 4 periods". */
export function conditionText(condition) {
  if (condition.type === "above" || condition.type === "below") return `${condition.type} ${condition.value}`;
  if (condition.type === "change_pct") return `change ${condition.direction} ${condition.value} %`;
  if (condition.type === "anomaly") {
    return `anomaly score ≥ ${condition.score} against ${condition.baseline_periods} periods`;
  }
  return condition.type;
}

function filtersText(filters) {
  return Object.entries(filters || {})
    // A value holding a comma is shown quoted: one value never reads as two.
    .map(([name, values]) => `${name}: ${showValues(values)}`)
    .join(" · ");
}

function channelsText(channels) {
  return channels.map((c) => (c.type === "webhook" ? `webhook ${c.webhook_id}` : c.type)).join(", ") || "none";
}

/** A measured value: whole numbers (counts) without decimals, the rest with. */
function measured(value) {
  return fmt.number(value, Number.isInteger(value) ? "count" : "");
}

/** The history's columns: what every transition has, and the score or change its rule's kind gives. */
function historyColumns(condition) {
  const columns = [
    ["Bucket", (e, rule) => fmt.bucket(e.bucket, rule.granularity)],
    ["State", (e) => h("span", { class: "state", dataset: { state: e.state } }, e.state)],
    ["Value", (e) => measured(e.value)],
  ];
  if (condition.type === "anomaly") columns.push(["Score", (e) => measured(e.score)]);
  if (condition.type === "change_pct") columns.push(["Change", (e) => fmt.change(e.change_pct)]);
  columns.push(["Recorded", (e) => (e.at ? e.at.slice(0, 16).replace("T", " ") : "–")]);
  return columns;
}

export class AlertCard {
  #rule;
  #historyOpen = false;
  #historyAsked = 0; // loads of the history asked for: only the latest one's answer is drawn

  /** `admin`: the edit, pause and delete buttons are shown; `onEdit(card)` on Edit; `onChange()` after
   * a delete; `onGone()` when the API no longer has the rule (deleted in another tab, or by another
   * admin). */
  constructor(rule, { api, admin, onEdit, onChange, onGone }) {
    this.api = api;
    this.onChange = onChange;
    this.onGone = onGone;
    this.state = h("span", { class: "state", role: "status" });
    this.name = h("h3", {});
    this.what = h("p", { class: "rule-what" });
    this.meta = h("p", { class: "rule-meta" });
    this.history = h("div", { class: "history table-wrap", hidden: true });
    const historyButton = h("button", { type: "button", class: "secondary", "aria-expanded": "false" }, "History");
    historyButton.addEventListener("click", () => this.#toggleHistory(historyButton));
    const actions = h("div", { class: "rule-actions" }, historyButton);
    if (admin) {
      this.editButton = h("button", { type: "button", class: "secondary", dataset: { action: "edit" } }, "Edit");
      this.editButton.addEventListener("click", () => onEdit?.(this));
      this.pause = h("button", { type: "button", class: "secondary", dataset: { action: "pause" } });
      this.pause.addEventListener("click", () => this.#setEnabled(!this.#rule.enabled));
      const remove = h("button", { type: "button", class: "danger", dataset: { action: "delete" } }, "Delete");
      remove.addEventListener("click", () => this.#remove(remove));
      actions.append(this.editButton, this.pause, remove);
    }
    this.message = h("p", { class: "error", role: "alert", hidden: true });
    this.el = h("article", { class: "rule", id: `rule-${rule.id}`, dataset: { id: rule.id } },
      h("header", {}, this.name, this.state), this.what, this.meta, actions, this.message, this.history);
    this.update(rule);
  }

  get rule() {
    return this.#rule;
  }

  /** Focus back on the card after its edit (its Edit button, where the edit began). */
  focus() {
    this.editButton?.focus();
  }

  /** Show the rule as the API answers it. */
  update(rule) {
    // The history's columns and bucket labels follow the rule's condition and granularity: an open
    // history is drawn again when an edit changed either.
    const before = this.#rule;
    const redraw = this.#historyOpen && before
      && (JSON.stringify(before.condition) !== JSON.stringify(rule.condition) || before.granularity !== rule.granularity);
    this.#rule = rule;
    setText(this.name, rule.name);
    this.setState(rule.state);
    const filters = filtersText(rule.filters);
    setText(this.what, [
      `${rule.metric}, ${rule.granularity}: ${conditionText(rule.condition)}`,
      rule.min_count ? `at least ${fmt.number(rule.min_count, "count")} counted` : null,
      filters || null,
    ].filter(Boolean).join(" · "));
    const evaluated = rule.last_evaluated_at ? rule.last_evaluated_at.slice(0, 16).replace("T", " ") : "not yet";
    setText(this.meta, `via ${channelsText(rule.channels)} · last evaluated ${evaluated}`);
    this.el.dataset.enabled = String(rule.enabled);
    if (this.pause) setText(this.pause, rule.enabled ? "Pause" : "Resume");
    if (redraw) this.loadHistory();
  }

  /** The rule's state (from the API or a live `alert` message); a change flashes the card. */
  setState(state) {
    const before = this.el?.dataset.state;
    const shown = this.#rule.enabled ? state : `${state} · paused`;
    setText(this.state, shown);
    this.state.dataset.state = state;
    if (this.el) {
      this.el.dataset.state = state;
      if (before && before !== state) {
        this.el.classList.remove("flash");
        void this.el.offsetWidth; // restart the animation
        this.el.classList.add("flash");
      }
    }
    this.#rule = { ...this.#rule, state };
  }

  /** A live transition: the new state at once, then the rule and its open history as the API has them. */
  transition(data) {
    this.setState(data.state);
    this.api.get(`/api/v1/alerts/${this.#rule.id}`).then((rule) => this.update(rule), () => null);
    if (this.#historyOpen) this.loadHistory();
  }

  async loadHistory() {
    const asked = ++this.#historyAsked;
    try {
      const answer = await this.api.get(`/api/v1/alerts/${this.#rule.id}/events`, { limit: HISTORY_LIMIT });
      if (asked !== this.#historyAsked) return; // a later load (a live transition, an edit) draws it
      const rule = this.#rule;
      const columns = historyColumns(rule.condition);
      const rows = answer.items.map((event) => h("tr", { dataset: { state: event.state, bucket: event.bucket } },
        columns.map(([, cell]) => h("td", {}, cell(event, rule)))));
      const head = h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)));
      const empty = h("td", { colspan: columns.length, class: "empty" }, "No transitions yet");
      const body = rows.length ? rows : [h("tr", {}, empty)];
      this.history.replaceChildren(h("table", { class: "data" }, h("thead", {}, head), h("tbody", {}, body)));
      this.history.dataset.loaded = String(answer.items.length);
    } catch (error) {
      this.#failed(error);
    }
  }

  #toggleHistory(button) {
    this.#historyOpen = !this.#historyOpen;
    button.setAttribute("aria-expanded", String(this.#historyOpen));
    this.history.hidden = !this.#historyOpen;
    if (this.#historyOpen) this.loadHistory();
  }

  async #setEnabled(enabled) {
    try {
      const rule = await this.api.request("PATCH", `/api/v1/alerts/${this.#rule.id}`, { body: { enabled } });
      this.#say(null);
      this.update(rule);
    } catch (error) {
      this.#failed(error);
    }
  }

  async #remove(button) {
    if (button.dataset.confirm !== "true") {
      button.dataset.confirm = "true";
      setText(button, "Delete: sure?");
      setTimeout(() => {
        button.dataset.confirm = "false";
        setText(button, "Delete");
      }, CONFIRM_MS);
      return;
    }
    try {
      await this.api.request("DELETE", `/api/v1/alerts/${this.#rule.id}`);
      this.el.remove();
      this.onChange?.();
    } catch (error) {
      this.#failed(error);
    }
  }

  /** An action refused: a 404 is the rule deleted elsewhere (the list drops it and says so, rather
   * than keep a card every action on fails); any other refusal is said on the card. */
  #failed(error) {
    if (error.status === 404 && this.onGone) this.onGone();
    else this.#say(error.message);
  }

  #say(text) {
    this.message.hidden = !text;
    setText(this.message, text || "");
  }
}
