// API documentation page: Swagger UI over the admin API's OpenAPI
// description. Kept in its own file so the page needs no inline script
// (the console's Content-Security-Policy allows none).
'use strict';

(() => {
  const base = location.pathname.replace(/\/ui(\/.*)?$/, '');
  const STORE = 'keygate.console.key';
  const err = document.getElementById('docs-error');
  if (typeof window.SwaggerUIBundle !== 'function') {
    err.textContent = 'The documentation viewer did not load. Reload the page; the raw description is at ' + base + '/openapi.json.';
    err.hidden = false;
    return;
  }
  const ui = window.SwaggerUIBundle({
    url: base + '/openapi.json',
    dom_id: '#swagger',
    deepLinking: false,
    tryItOutEnabled: false,
    persistAuthorization: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    validatorUrl: null,
    // Only this server: never let a query string point the page elsewhere.
    queryConfigEnabled: false,
    onComplete: () => {
      const key = sessionStorage.getItem(STORE);
      if (key) {
        ui.preauthorizeApiKey('apikey', key);
        document.getElementById('docs-signed-in').hidden = false;
      }
    },
    onFailure: (e) => {
      err.textContent = 'The API description could not be loaded: ' + (e && e.message ? e.message : e);
      err.hidden = false;
    },
  });
  window.keygateDocs = ui;
})();
