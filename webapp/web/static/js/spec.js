// What the API serves, read from its OpenAPI document: new metrics and parameters appear on the
// pages without a change here.

const SERIES_PATH = "/api/v1/analytics/time-series/{metric}";
const AGGREGATIONS_PATH = "/api/v1/analytics/aggregations";

export class Spec {
  constructor(document) {
    this.document = document;
    this.paths = document.paths || {};
    this.schemas = document.components?.schemas || {};
  }

  static async load() {
    let response;
    try {
      response = await fetch("/api/v1/openapi.json", { credentials: "same-origin" });
    } catch {
      throw new Error("the API could not be reached (no network, or the server is down)");
    }
    if (!response.ok) throw new Error(`the API document did not load (${response.status})`);
    return new Spec(await response.json());
  }

  /** Spec.load() begun now by a page that awaits it later: a failure meanwhile is the page's to say
   * when it awaits it, not an uncaught rejection while the page starts. */
  static start() {
    const loading = Spec.load();
    loading.catch(() => {});
    return loading;
  }

  /** Whether the API has this path (and method). */
  has(path, method = "get") {
    return Boolean(this.paths[path]?.[method]);
  }

  #parameter(path, name) {
    return (this.paths[path]?.get?.parameters || []).find((p) => p.name === name);
  }

  /** A schema with its `$ref` followed (one level: the document's references point at components). */
  resolve(schema) {
    const ref = schema?.$ref;
    return ref ? this.schemas[ref.split("/").pop()] : schema;
  }

  /** The component schema `name` (the request bodies' models: AlertCreate, ...). */
  schema(name) {
    return this.schemas[name];
  }

  /** The allowed values of a GET route's query parameter ([] when it has none or takes any). */
  parameterValues(path, name) {
    return this.#enumOf(this.#parameter(path, name)?.schema);
  }

  /** The allowed values of a schema: its enum, or the first enum among its alternatives. */
  enumOf(schema) {
    return this.#enumOf(schema);
  }

  #enumOf(schema) {
    const resolved = this.resolve(schema) || {};
    if (resolved.enum) return resolved.enum;
    for (const option of resolved.anyOf || []) {
      const values = this.#enumOf(option);
      if (values.length) return values;
    }
    return [];
  }

  /** The metrics of time-series/{metric}. */
  get seriesMetrics() {
    return this.#enumOf(this.#parameter(SERIES_PATH, "metric")?.schema);
  }

  /** The granularities a time series takes. */
  get granularities() {
    return this.#enumOf(this.#parameter(SERIES_PATH, "granularity")?.schema);
  }

  /** The clocks a time series takes ([] while the API has no clock parameter). */
  get clocks() {
    return this.#enumOf(this.#parameter(SERIES_PATH, "clock")?.schema);
  }

  #aggregationField(name) {
    const body = this.paths[AGGREGATIONS_PATH]?.post?.requestBody?.content?.["application/json"]?.schema;
    return this.resolve(body)?.properties?.[name];
  }

  /** Whether POST /analytics/aggregations takes the body field `name`. */
  aggregationTakes(name) {
    return Boolean(this.#aggregationField(name));
  }

  /** What POST /analytics/aggregations takes as `percentiles`: whole numbers from `minimum` to
   * `maximum`, at most `maxItems` of them (the API's bounds where its document states them). */
  get percentileLimits() {
    const field = this.resolve(this.#aggregationField("percentiles")) || {};
    const list = [field, ...(field.anyOf || [])].map((s) => this.resolve(s) || {}).find((s) => s.type === "array") || {};
    const item = this.resolve(list.items) || {};
    return { minimum: item.minimum ?? 1, maximum: item.maximum ?? 99, maxItems: list.maxItems ?? 20 };
  }

  /** Metrics POST /analytics/aggregations takes (percentiles and group-by need one of these). */
  get aggregationMetrics() {
    return this.#enumOf(this.#aggregationField("metrics")?.items);
  }

  /** Dimensions to group and filter by. */
  get dimensions() {
    return this.#enumOf(this.#aggregationField("group_by")?.items);
  }

  /** The allowed values of a dimension with a fixed set (status, priority, channel), else []. */
  valuesOf(dimension) {
    return this.#enumOf(this.schemas.Ticket?.properties?.[dimension]);
  }
}
