"""The OpenAPI document and a self-contained page that lists it."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from webapp.api.plumbing import openapi
from webapp.api.plumbing.spec import document

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API reference</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.6rem}
.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:600;text-transform:uppercase}
.get{color:#0a7}.post{color:#07c}.patch{color:#c70}.delete{color:#c33}
code{background:#f4f4f4;padding:0 .3rem;border-radius:3px}
details pre{background:#f8f8f8;padding:.6rem;overflow:auto}
</style></head><body><h1>Support-ticket analytics API</h1>
<p>The machine-readable document is at <a href="openapi.json"><code>/api/v1/openapi.json</code></a>.
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>
from <code>POST /api/v1/auth/login</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch("openapi.json").then(r => r.json()).then(spec => {
  const root = document.getElementById("ops"); root.textContent = "";
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const div = document.createElement("div"); div.className = "op";
      const head = document.createElement("div");
      const m = document.createElement("span"); m.className = "m " + method; m.textContent = method;
      const p = document.createElement("code"); p.textContent = path;
      head.append(m, p, " — " + (op.summary || "")); div.append(head);
      const det = document.createElement("details"); const sum = document.createElement("summary");
      sum.textContent = "parameters, body and responses"; const pre = document.createElement("pre");
      pre.textContent = JSON.stringify({parameters: op.parameters, requestBody: op.requestBody,
        responses: Object.entries(op.responses).map(([status]) => status)}, null, 2);
      det.append(sum, pre); div.append(det); root.append(div);
    }
  }
});
</script></body></html>"""


@bp.get("/openapi.json")
@document("This OpenAPI document", tag="operations", errors=(), auth=False)
def spec() -> Response:
    return jsonify(openapi.build(current_app))


@bp.get("/docs")
@document(
    "A page listing every route of this API",
    tag="operations",
    errors=(),
    auth=False,
    binary={200: "text/html"},
)
def docs_page() -> Response:
    return Response(_PAGE, mimetype="text/html")
