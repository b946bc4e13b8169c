// One alert rule on the page: what it watches, its state (ok or firing), its history of transitions
// on demand, and for admins the pause and delete actions. Every value goes in as text.
import { h, setText } from "./dom.js";
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
    .map(([name, values]) => `${name}: ${values.map((v) => v ?? "(none)").join(", ")}`)
    .join(" · ");
}

function channelsText(channels) {
  return channels.map((c) => (c.type === "webhook" ? `webhook ${c.webhook_id}` : c.type)).join(", ") || "none";
}

function historyRow(event, granularity) {
  return h("tr", { dataset: { state: event.state, bucket: event.bucket } },
    h("td", {}, fmt.bucket(event.bucket, granularity)),
    h("td", {}, h("span", { class: "state", dataset: { state: event.state } }, event.state)),
    h("td", {}, fmt.number(event.value)),
    h("td", {}, event.score === null || event.score === undefined ? "–" : fmt.number(event.score)),
    h("td", {}, event.at ? event.at.slice(0, 19).replace("T", " ") : "–"));
}

export class AlertCard {
  #rule;
  #historyOpen = false;

  /** `admin`: the pause and delete buttons are shown; `onChange()` after a delete. */
  constructor(rule, { api, admin, onChange }) {
    this.api = api;
    this.onChange = onChange;
    this.state = h("span", { class: "state", role: "status" });
    this.name = h("h3", {});
    this.what = h("p", { class: "rule-what" });
    this.meta = h("p", { class: "rule-meta" });
    this.history = h("div", { class: "history table-wrap", hidden: true });
    const historyButton = h("button", { type: "button", class: "secondary", "aria-expanded": "false" }, "History");
    historyButton.addEventListener("click", () => this.#toggleHistory(historyButton));
    const actions = h("div", { class: "rule-actions" }, historyButton);
    if (admin) {
      this.pause = h("button", { type: "button", class: "secondary", dataset: { action: "pause" } });
      this.pause.addEventListener("click", () => this.#setEnabled(!this.#rule.enabled));
      const remove = h("button", { type: "button", class: "danger", dataset: { action: "delete" } }, "Delete");
      remove.addEventListener("click", () => this.#remove(remove));
      actions.append(this.pause, remove);
    }
    this.message = h("p", { class: "error", role: "alert", hidden: true });
    this.el = h("article", { class: "rule", id: `rule-${rule.id}`, dataset: { id: rule.id } },
      h("header", {}, this.name, this.state), this.what, this.meta, actions, this.message, this.history);
    this.update(rule);
  }

  get rule() {
    return this.#rule;
  }

  /** Show the rule as the API answers it. */
  update(rule) {
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

  /** A live transition: the new state, and the history again when it is open. */
  transition(data) {
    this.setState(data.state);
    if (this.#historyOpen) this.loadHistory();
  }

  async loadHistory() {
    try {
      const answer = await this.api.get(`/api/v1/alerts/${this.#rule.id}/events`, { limit: HISTORY_LIMIT });
      const rows = answer.items.map((event) => historyRow(event, this.#rule.granularity));
      const head = h("tr", {}, ["Bucket", "State", "Value", "Score", "Recorded"].map((c) => h("th", { scope: "col" }, c)));
      const body = rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No transitions yet"))];
      this.history.replaceChildren(h("table", { class: "data" }, h("thead", {}, head), h("tbody", {}, body)));
      this.history.dataset.loaded = String(answer.items.length);
    } catch (error) {
      this.#say(error.message);
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
      this.#say(error.message);
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
      this.#say(error.message);
    }
  }

  #say(text) {
    this.message.hidden = !text;
    setText(this.message, text || "");
  }
}
