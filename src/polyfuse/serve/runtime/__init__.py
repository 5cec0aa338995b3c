"""The serving runtime: model stages, micro-batching, cache, breakers and Ray replicas.
Knows nothing of HTTP; talks to the HTTP layer through `polyfuse.serve.types`."""
