// Package web is lanyard's admin web page, mounted at /admin/: login (the
// admin client certificate or a password), a dashboard, certificate
// search and detail pages with revocation, enrollment tokens and the audit
// log.
//
// Pages are rendered on the server with html/template from embedded files;
// the page runs no JavaScript. Every response carries a strict
// Content-Security-Policy (no inline script or style), nosniff,
// no-referrer and no-store headers. Sessions live in the store under the
// SHA-256 of their cookie value, expire on the injected clock, and carry a
// per-session CSRF token that every form sends back; Go's
// http.CrossOriginProtection refuses cross-origin browser POSTs as well.
//
// The layer is thin: each handler decodes its input, calls one method of
// the store or of the issuance or revocation services, and renders the
// result. It never touches CA keys.
package web
