// The form that creates an alert rule: its choices come from the API document (metrics,
// granularities, condition types and directions), its body is checked against the document's
// AlertCreate schema before it is sent, and the API's own refusal is shown as the API words it.
import { h, setText } from "./dom.js";
import { bodyFilter, parseValues } from "./filters.js";
import { message, problems, tagsOf } from "./schema-check.js";

const BODY = "AlertCreate";
// Which inputs each condition type takes (the rest are hidden and not sent).
const CONDITION_FIELDS = {
  above: ["value"],
  below: ["value"],
  change_pct: ["direction", "value"],
  anomaly: ["score", "baseline_periods"],
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
  /** `form` holds the inputs of alerts.html; `onSubmit(body)` sends a body that passed the check. */
  constructor(form, spec, { onSubmit }) {
    this.form = form;
    this.spec = spec;
    this.error = form.querySelector("#form-error");
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
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
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
        await onSubmit(body);
        form.reset();
        this.#showConditionFields();
      } catch (error) {
        this.showError(error.message, error.details?.field);
      } finally {
        button.disabled = false;
      }
    });
  }

  // By name through `elements`: a control named "name" would otherwise hide the form's own property.
  #field(name) {
    return this.form.elements.namedItem(name);
  }

  /** Offer the organization's webhooks as channels beside the WebSocket. */
  setWebhooks(webhooks) {
    const list = this.form.querySelector("#alert-webhooks");
    list.replaceChildren(...webhooks.map((hook) => h("label", {},
      h("input", { type: "checkbox", name: "webhook", value: hook.id }),
      hook.description || hook.url)));
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
    if (Object.keys(filters).length) body.filters = filters;
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
