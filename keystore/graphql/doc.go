// Package graphql decides what a GraphQL request needs before it reaches the
// backend: which areas it reads and which it writes. A GraphQL endpoint is
// one path with the operation in the document, so it cannot be split into
// areas by path; instead each root field of each operation maps to an area.
//
// The package knows nothing of keys, HTTP servers or Caddy: the caller hands
// it the method, content type, raw query string and body of a request, and
// gets back the needs (or an error saying why the request is refused) and
// the exact body bytes to forward.
//
// The judge is conservative: whatever a backend might execute is judged.
// Every operation of every document counts, whatever operationName selects;
// directives such as @skip are ignored; inline fragments count whatever
// their type condition; anything two parsers could read differently
// (duplicate JSON keys, a query both in the URL and the body, …) is refused.
package graphql
