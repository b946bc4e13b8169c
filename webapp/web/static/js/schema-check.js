// A request body checked against the API's own OpenAPI schema before it is sent: the same limits as
// the server's (they come from the same document), named and worded as the server names them
// ("invalid request: condition.anomaly.score: Input should be greater than 0").

const MAX_REPORTED = 5;

function describe(value) {
  return typeof value === "string" ? `'${value}'` : JSON.stringify(value);
}

function choices(values) {
  const shown = values.map(describe);
  return shown.length > 1 ? `${shown.slice(0, -1).join(", ")} or ${shown.at(-1)}` : shown[0];
}

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

const TYPE_MESSAGES = {
  string: "Input should be a valid string",
  integer: "Input should be a valid integer",
  number: "Input should be a valid number",
  boolean: "Input should be a valid boolean",
  object: "Input should be a valid dictionary",
  array: "Input should be a valid list",
  null: "Input should be None",
};

function fits(type, value) {
  const actual = typeOf(value);
  return actual === type || (type === "number" && actual === "integer");
}

/** A tagged union's tags in the order of its alternatives (the order the server lists them in). */
export function tagsOf(schema) {
  const { mapping } = schema.discriminator;
  const order = (schema.oneOf || schema.anyOf || []).map((option) => option.$ref);
  const rank = (tag) => order.indexOf(mapping[tag]);
  return Object.keys(mapping).sort((a, b) => rank(a) - rank(b));
}

class Checker {
  constructor(spec) {
    this.spec = spec;
    this.found = [];
  }

  report(path, message) {
    this.found.push({ field: path.join(".") || "body", message });
  }

  check(schema, value, path) {
    const resolved = this.spec.resolve(schema) || {};
    if (resolved.discriminator) return this.#tagged(resolved, value, path);
    if (resolved.anyOf || resolved.oneOf) return this.#anyOf(resolved.anyOf || resolved.oneOf, value, path);
    if ("const" in resolved && value !== resolved.const) {
      return this.report(path, `Input should be ${describe(resolved.const)}`);
    }
    if (resolved.enum && !resolved.enum.includes(value)) {
      return this.report(path, `Input should be ${choices(resolved.enum)}`);
    }
    if (resolved.type && !fits(resolved.type, value)) {
      const model = resolved.type === "object" && resolved.title;
      return this.report(path, model ? `Input should be a valid dictionary or instance of ${model}` : TYPE_MESSAGES[resolved.type]);
    }
    if (resolved.type === "object") return this.#object(resolved, value, path);
    if (resolved.type === "array") return this.#array(resolved, value, path);
    if (resolved.type === "string") return this.#string(resolved, value, path);
    if (resolved.type === "number" || resolved.type === "integer") return this.#number(resolved, value, path);
    return undefined;
  }

  #tagged(schema, value, path) {
    const name = schema.discriminator.propertyName;
    const tags = tagsOf(schema);
    if (typeOf(value) !== "object") {
      return this.report(path, "Input should be a valid dictionary or object to extract fields from");
    }
    if (!(name in value)) {
      return this.report(path, `Unable to extract tag using discriminator '${name}'`);
    }
    const target = schema.discriminator.mapping[value[name]];
    if (!target) {
      return this.report(path, `Input tag ${describe(value[name])} found using '${name}' does not match any of`
        + ` the expected tags: ${tags.map(describe).join(", ")}`);
    }
    return this.check({ $ref: target }, value, [...path, value[name]]);
  }

  #anyOf(options, value, path) {
    const attempts = options.map((option) => {
      const inner = new Checker(this.spec);
      inner.check(option, value, path);
      return inner.found;
    });
    if (attempts.some((found) => !found.length)) return;
    this.found.push(...attempts[0]);
  }

  #object(schema, value, path) {
    const properties = schema.properties || {};
    const required = new Set(schema.required || []);
    for (const [name, property] of Object.entries(properties)) {
      if (name in value) this.check(property, value[name], [...path, name]);
      else if (required.has(name)) this.report([...path, name], "Field required");
    }
    for (const name of Object.keys(value)) {
      if (name in properties) continue;
      if (schema.additionalProperties === false) this.report([...path, name], "Extra inputs are not permitted");
      else if (typeof schema.additionalProperties === "object") {
        this.check(schema.additionalProperties, value[name], [...path, name]);
      }
    }
  }

  #array(schema, value, path) {
    const count = (n) => `${n} item${n === 1 ? "" : "s"} after validation, not ${value.length}`;
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      return this.report(path, `List should have at least ${count(schema.minItems)}`);
    }
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      return this.report(path, `List should have at most ${count(schema.maxItems)}`);
    }
    value.forEach((item, i) => this.check(schema.items, item, [...path, i]));
  }

  #string(schema, value, path) {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) {
      this.report(path, `String should have at least ${schema.minLength} character${schema.minLength === 1 ? "" : "s"}`);
    }
    if (schema.maxLength !== undefined && length > schema.maxLength) {
      this.report(path, `String should have at most ${schema.maxLength} characters`);
    }
  }

  #number(schema, value, path) {
    if (!Number.isFinite(value)) return this.report(path, "Input should be a finite number");
    const bounds = [
      ["exclusiveMinimum", (x, b) => x > b, "greater than"],
      ["minimum", (x, b) => x >= b, "greater than or equal to"],
      ["exclusiveMaximum", (x, b) => x < b, "less than"],
      ["maximum", (x, b) => x <= b, "less than or equal to"],
    ];
    for (const [key, holds, words] of bounds) {
      if (schema[key] !== undefined && !holds(value, schema[key])) {
        return this.report(path, `Input should be ${words} ${schema[key]}`);
      }
    }
    return undefined;
  }
}

/**
 * What is wrong with `value` against `schema` (a component of `spec`): [{field, message}], [] when
 * fine. The top-level properties in `skip` are left to the server.
 */
export function problems(spec, schema, value, { skip = [] } = {}) {
  const checker = new Checker(spec);
  const kept = typeOf(value) === "object"
    ? Object.fromEntries(Object.entries(value).filter(([name]) => !skip.includes(name)))
    : value;
  checker.check(schema, kept, []);
  return checker.found;
}

/** The problems as one line, as the API words its 400 for an invalid body. */
export function message(found) {
  const parts = found.slice(0, MAX_REPORTED).map((p) => `${p.field}: ${p.message}`);
  return `invalid request: ${parts.join("; ")}`;
}
