// The interactive API reference over this server's OpenAPI document (Swagger UI, served from here).
// Deferred after the bundle, so both it and the page are there when this runs.
window.SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // A token typed into "Authorize" stays in the page's memory, never in localStorage.
  persistAuthorization: false,
});
