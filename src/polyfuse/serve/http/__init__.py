"""The HTTP layer: app factory, middleware, request inputs, routes, OIP and the web page.
The only part of polyfuse that imports the web framework."""
