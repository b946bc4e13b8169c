// The alerts page: the organization's rules with their state, each one's history, live `alert`
// messages moving a rule's state without a reload, and for admins the form that creates or edits a rule.
import { latestOnly } from "../api.js";
import { AlertCard } from "../alert-card.js";
import { AlertForm } from "../alert-form.js";
import { h, pageFailed, setText, showError } from "../dom.js";
import * as fmt from "../format.js";
import { startPage } from "../shell.js";
import { Spec } from "../spec.js";

const ADMIN = "admin";
// The rules are read again this often while the page is shown: a rule without the WebSocket channel
// sends no live message, yet its state and last evaluation change with every pass of beat; and rules
// created or deleted in another tab (or by another admin) send none either.
const REREAD_MS = 30_000;

class RuleList {
  #cards = new Map();
  #begin = latestOnly();
  // `onEdit(card)`: an admin asked to edit the card's rule. Set once the form is made, after the list.
  onEdit = null;
  // `onRemoved(id)`: rule `id` is no longer listed (deleted elsewhere); an edit of it ends.
  onRemoved = null;

  constructor(root, { api, admin }) {
    this.root = root;
    this.api = api;
    this.admin = admin;
  }

  /** Read the rules again; an answer overtaken by a later read is dropped (reads may overlap). */
  async load() {
    const current = this.#begin();
    const answer = await this.api.get("/api/v1/alerts");
    if (!current()) return;
    const ids = new Set(answer.items.map((rule) => rule.id));
    for (const [id, card] of this.#cards) {
      if (!ids.has(id)) {
        card.el.remove();
        this.#cards.delete(id);
        this.onRemoved?.(id);
      }
    }
    for (const rule of answer.items) this.add(rule);
    this.#empty();
  }

  /** Drop `rule`, which the API no longer has (an action on it answered 404: deleted in another tab or
   * by another admin), and say so: its card would otherwise stay, every action on it failing. */
  gone(rule) {
    this.#cards.get(rule.id)?.el.remove();
    this.#cards.delete(rule.id);
    this.#empty();
    this.onRemoved?.(rule.id);
    const line = document.getElementById("alert-news");
    line.hidden = false;
    line.dataset.state = "deleted";
    setText(line, `${rule.name} was deleted elsewhere (in another tab or by another admin)`);
  }

  /** Show `rule` (a new card, or the card it has brought up to date). */
  add(rule) {
    const card = this.#cards.get(rule.id);
    if (card) {
      card.update(rule);
      return card;
    }
    const made = new AlertCard(rule, {
      api: this.api,
      admin: this.admin,
      onEdit: (card) => this.onEdit?.(card),
      onChange: () => {
        this.#cards.delete(rule.id);
        this.#empty();
      },
      onGone: () => this.gone(made.rule),
    });
    this.#cards.set(rule.id, made);
    this.root.append(made.el);
    this.#empty();
    return made;
  }

  card(id) {
    return this.#cards.get(id);
  }

  #empty() {
    const note = this.root.querySelector(".empty");
    if (this.#cards.size && note) note.remove();
    if (!this.#cards.size && !note) this.root.append(h("p", { class: "empty" }, "No alert rules yet"));
  }
}

/** A live transition in words, for the line above the rules. */
function news(data, granularity) {
  const value = fmt.number(data.value, Number.isInteger(data.value) ? "count" : "");
  const score = data.score === null || data.score === undefined ? "" : `, score ${fmt.number(data.score)}`;
  return `${data.name} is ${data.state} (bucket ${fmt.bucket(data.bucket, granularity)}: ${value}${score})`;
}

async function main() {
  const specLoading = Spec.start();
  const page = await startPage("alerts");
  if (!page) return;
  const admin = page.session.user?.role === ADMIN;
  const rules = new RuleList(document.getElementById("rules"), { api: page.api, admin });
  page.live.on("alert", (message) => {
    const card = rules.card(message.data.alert_id);
    if (card) card.transition(message.data);
    else rules.load().catch((error) => showError(error.message));
    const line = document.getElementById("alert-news");
    line.hidden = false;
    line.dataset.state = message.data.state;
    setText(line, news(message.data, card?.rule.granularity ?? "hourly"));
  });
  // Transitions made while the socket was away come with the resume; the list is read again anyway.
  page.live.on("connected", (message) => {
    if (message.resumed) rules.load().catch((error) => showError(error.message));
  });
  document.getElementById("viewer-note").hidden = admin;
  if (admin) {
    const formEl = document.getElementById("alert-form");
    const form = new AlertForm(formEl, await specLoading, {
      onSubmit: async (body) => {
        const rule = await page.api.post("/api/v1/alerts", body);
        rules.add(rule).el.scrollIntoView({ block: "nearest" });
        formEl.dataset.created = String(rule.id);
      },
      // The same rule changed in place: its id, and so its history, are kept. Only the fields the
      // form changed are sent, so a pause (or another admin's change) made while it was open stays.
      onEdit: async (rule, body) => {
        const changes = Object.fromEntries(
          Object.entries(body).filter(([name, value]) => JSON.stringify(value) !== JSON.stringify(rule[name])),
        );
        let changed;
        try {
          changed = Object.keys(changes).length
            ? await page.api.request("PATCH", `/api/v1/alerts/${rule.id}`, { body: changes })
            : await page.api.get(`/api/v1/alerts/${rule.id}`);
        } catch (error) {
          if (error.status !== 404) throw error;
          // Deleted elsewhere while the form was open: the card goes, and the form keeps what was
          // typed as a new rule to be saved (rules.gone ends the edit through onRemoved).
          rules.gone(rule);
          return;
        }
        rules.add(changed);
        formEl.dataset.saved = String(changed.id);
      },
      onDone: (rule) => {
        const card = rules.card(rule.id);
        card?.el.scrollIntoView({ block: "nearest" });
        card?.focus();
      },
    });
    // The list is made before the form (a viewer has none): its cards reach the form through it.
    rules.onEdit = (card) => form.edit(card.rule);
    rules.onRemoved = (id) => form.abandon(id);
    formEl.hidden = false;
    page.api.get("/api/v1/webhooks").then((answer) => form.setWebhooks(answer.items),
      (error) => form.showError(error.message));
  }
  try {
    await rules.load();
    showError(null);
    document.body.dataset.loaded = "1";
  } catch (error) {
    showError(error.message);
  }
  const reread = () => rules.load().then(() => showError(null), (error) => showError(error.message));
  setInterval(() => {
    if (!document.hidden) reread();
  }, REREAD_MS);
  // A tab shown again reads the rules at once: what changed while it was hidden (the timer skips a
  // hidden page, and a browser slows a background tab's timers) is shown before anything is clicked.
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) reread();
  });
}

main().catch(pageFailed);
