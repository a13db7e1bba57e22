// Starts Swagger UI on this collector's own OpenAPI document (a file, not an inline script,
// so the page's Content-Security-Policy can forbid inline code).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
