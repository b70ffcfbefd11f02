// nbo's API page: Swagger UI (BentoML's copy, served by this server) over /docs.json.
// No online validator badge (it would call validator.swagger.io), no top bar; "Authorize" takes an
// API key, which every "Try it out" call then sends as `Authorization: Bearer <key>`; the key is
// kept in this page's memory only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
