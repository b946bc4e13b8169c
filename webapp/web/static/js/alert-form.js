// The form that creates an alert rule, or edits one: its choices come from the API document (metrics,
// granularities, condition types and directions), its body is checked against the document's
// AlertCreate schema before it is sent, and the API's own refusal is shown as the API words it.
import { h, setText } from "./dom.js";
import { bodyFilter, boxValues, parseValues } from "./filters.js";
import { message, problems, tagsOf } from "./schema-check.js";

const BODY = "AlertCreate";
// Which inputs each condition type takes (the rest are hidden and not sent).
const CONDITION_FIELDS = {
  above: ["value"],
  below: ["value"],
  change_pct: ["direction", "value"],
  anomaly: ["score", "baseline_periods"],
};
// The form's heading and button in each of its two modes.
const MODES = {
  create: { title: () => "New alert rule", submit: "Create rule" },
  edit: { title: (rule) => `Edit alert rule: ${rule.name}`, submit: "Save changes" },
};

// Judged by the server alone: its document describes the filters' shape, but the values (and the
// words of a refusal) are the filter parser's.
const SERVER_JUDGED = ["filters"];

/** What the API would refuse in `body` for its shape, worded as the API words it; null when none. */
export function checkRule(spec, body) {
  const found = problems(spec, spec.schema(BODY), body, { skip: SERVER_JUDGED });
  return found.length ? { text: message(found), field: found[0].field } : null;
}

function option(value, label = value) {
  return h("option", { value }, label);
}

/** A number input's value: a number, or undefined when empty (so the check says it is required). */
function numberOf(input) {
  const text = input.value.trim();
  return text === "" ? undefined : Number(text);
}

export class AlertForm {
  // The rule being edited, or null while the form creates one.
  #editing = null;

  /** `form` holds the inputs of alerts.html; `onSubmit(body)` sends a body that passed the check for a
   * new rule, `onEdit(rule, body)` for the rule being edited; `onDone(rule)` when an edit is saved or
   * cancelled (the rule it was on). */
  constructor(form, spec, { onSubmit, onEdit, onDone }) {
    this.form = form;
    this.spec = spec;
    this.onDone = onDone;
    this.error = form.querySelector("#form-error");
    this.title = form.querySelector("#alert-form-title");
    this.cancel = form.querySelector("[data-role=cancel]");
    const create = spec.schema(BODY);
    const condition = spec.resolve(create.properties.condition);
    this.#field("metric").replaceChildren(...spec.enumOf(create.properties.metric).map((m) => option(m)));
    this.#field("granularity").replaceChildren(...spec.enumOf(create.properties.granularity).map((g) => option(g)));
    this.#field("condition").replaceChildren(...tagsOf(condition).map((t) => option(t)));
    const change = spec.resolve({ $ref: condition.discriminator.mapping.change_pct });
    this.#field("direction").replaceChildren(...spec.enumOf(change.properties.direction).map((d) => option(d)));
    const filters = form.querySelector("#alert-filters");
    for (const dimension of Object.keys(spec.resolve(create.properties.filters).properties || {})) {
      const allowed = spec.valuesOf(dimension);
      filters.append(h("label", {}, dimension, h("input", {
        type: "text", name: `filter-${dimension}`, dataset: { dimension },
        placeholder: allowed.length ? allowed.join(", ") : 'a, b, "c, d"',
      })));
    }
    this.#field("condition").addEventListener("change", () => this.#showConditionFields());
    this.#showConditionFields();
    this.cancel.addEventListener("click", () => this.#finishEdit());
    // Escape leaves an edit as Cancel does: the keyboard's way out of the form.
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.#editing) this.#finishEdit();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const editing = this.#editing;
      const body = this.body();
      const refused = checkRule(spec, body);
      if (refused) {
        this.showError(refused.text, refused.field);
        return;
      }
      this.showError(null);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        if (editing) {
          await onEdit(editing, body);
          // Unless the rule was found deleted meanwhile (abandon): the fields then stay to be saved anew.
          if (this.#editing === editing) this.#finishEdit();
        } else {
          await onSubmit(body);
          this.#reset();
        }
      } catch (error) {
        this.showError(error.message, error.details?.field);
      } finally {
        button.disabled = false;
      }
      // Disabling the focused button dropped the focus out of the form: a refusal brings it back to
      // the field named (or the button), where the keyboard goes on (and Escape leaves an edit).
      if (!this.error.hidden) (this.form.querySelector("[aria-invalid=true]") || button).focus();
    });
  }

  // By name through `elements`: a control named "name" would otherwise hide the form's own property.
  #field(name) {
    return this.form.elements.namedItem(name);
  }

  /** Offer the organization's webhooks as channels beside the WebSocket (a rule opened for editing
   * before they arrived keeps its ticks). */
  setWebhooks(webhooks) {
    const list = this.form.querySelector("#alert-webhooks");
    const ticked = new Set([...list.querySelectorAll("input:checked")].map((box) => box.value));
    list.replaceChildren(...webhooks.map((hook) => {
      const box = h("input", { type: "checkbox", name: "webhook", value: hook.id });
      // The property, not the attribute: a reset of the form unticks it.
      box.checked = ticked.has(box.value);
      return h("label", {}, box, hook.description || hook.url);
    }));
  }

  /** The checkbox of webhook `id`; one of its own when the list lacks it (not read yet), so that a
   * rule's channel is not dropped by saving its edit. */
  #webhookBox(id) {
    const list = this.form.querySelector("#alert-webhooks");
    const found = list.querySelector(`input[value="${CSS.escape(String(id))}"]`);
    if (found) return found;
    const box = h("input", { type: "checkbox", name: "webhook", value: id });
    list.append(h("label", {}, box, `webhook ${id}`));
    return box;
  }

  /** Open `rule` in the form to be changed: every field as the rule has it, focus on its name. */
  edit(rule) {
    this.#reset();
    this.#editing = rule;
    this.#showMode("edit", rule);
    this.#field("name").value = rule.name;
    this.#field("metric").value = rule.metric;
    this.#field("granularity").value = rule.granularity;
    this.#field("condition").value = rule.condition.type;
    for (const name of ["value", "direction", "score", "baseline_periods"]) {
      if (rule.condition[name] !== undefined) this.#field(name).value = String(rule.condition[name]);
    }
    this.#showConditionFields();
    this.#field("min_count").value = String(rule.min_count);
    // Written as a box reads them: a value holding a comma stays one value.
    for (const input of this.form.querySelectorAll("[data-dimension]")) {
      input.value = boxValues(rule.filters?.[input.dataset.dimension] || []);
    }
    this.#field("websocket").checked = rule.channels.some((c) => c.type === "websocket");
    for (const channel of rule.channels) {
      if (channel.type === "webhook") this.#webhookBox(channel.webhook_id).checked = true;
    }
    this.#field("enabled").checked = rule.enabled;
    this.form.scrollIntoView({ block: "nearest" });
    this.#field("name").focus();
  }

  /** The rule being edited (`id`) was deleted elsewhere: the form turns to creating a rule with what
   * it holds, so nothing typed is lost (Save makes it anew, Cancel or Escape clears it). */
  abandon(id) {
    if (this.#editing?.id !== id) return;
    this.#editing = null;
    this.#showMode("create");
    this.showError("The rule being edited was deleted elsewhere: Save creates a new rule with these fields.");
  }

  /** Back to creating a rule, telling `onDone` which rule the edit was on. */
  #finishEdit() {
    const rule = this.#editing;
    this.#reset();
    if (rule) this.onDone?.(rule);
  }

  /** An empty form that creates a rule. */
  #reset() {
    this.#editing = null;
    this.form.reset();
    this.showError(null);
    this.#showConditionFields();
    this.#showMode("create");
  }

  #showMode(mode, rule = null) {
    const { title, submit } = MODES[mode];
    setText(this.title, title(rule));
    setText(this.form.querySelector("button[type=submit]"), submit);
    this.cancel.hidden = mode !== "edit";
    this.form.dataset.mode = mode;
  }

  #showConditionFields() {
    const shown = new Set(CONDITION_FIELDS[this.#field("condition").value] || []);
    for (const name of ["value", "direction", "score", "baseline_periods"]) {
      this.form.querySelector(`[data-field=${name}]`).hidden = !shown.has(name);
    }
  }

  /** The request body the form describes. */
  body() {
    const form = this.form;
    const type = this.#field("condition").value;
    const condition = { type };
    for (const name of CONDITION_FIELDS[type] || []) {
      const input = this.#field(name);
      const value = input.tagName === "SELECT" ? input.value : numberOf(input);
      if (value !== undefined) condition[name] = value;
    }
    const filters = {};
    // Read as the explorer reads its boxes (a value holding a comma in double quotes), sent as a list.
    for (const input of form.querySelectorAll("[data-dimension]")) {
      const values = parseValues(input.value);
      if (values.length) filters[input.dataset.dimension] = bodyFilter(values);
    }
    const channels = [];
    if (this.#field("websocket").checked) channels.push({ type: "websocket" });
    for (const box of form.querySelectorAll("input[name=webhook]:checked")) {
      channels.push({ type: "webhook", webhook_id: Number(box.value) });
    }
    const body = {
      name: this.#field("name").value.trim(),
      metric: this.#field("metric").value,
      granularity: this.#field("granularity").value,
      condition,
      channels,
      enabled: this.#field("enabled").checked,
    };
    const minCount = numberOf(this.#field("min_count"));
    if (minCount !== undefined) body.min_count = minCount;
    // An edit sends its filters even when none is left: emptied boxes clear the rule's filters.
    if (Object.keys(filters).length || this.#editing) body.filters = filters;
    return body;
  }

  /** The refusal under the form (null clears it); the field it names is marked invalid. */
  showError(text, field = null) {
    this.error.hidden = !text;
    setText(this.error, text || "");
    for (const input of this.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    // The API names a field by its path ("condition.anomaly.score") or, for a filter, its dimension.
    const name = field ? String(field).split(".").at(-1) : null;
    const input = name && (this.form.querySelector(`[name="${CSS.escape(name)}"]`)
      || this.form.querySelector(`[name="filter-${CSS.escape(name)}"]`));
    if (input) input.setAttribute("aria-invalid", "true");
  }
}
