"""Human review of served answers: which answers go to people (`routing`), where they wait
(`store`: SQLite, or Redis for several replicas), the service's queue that ties the two
together (`queue`), and the training manifest of reviewed samples (`export`).

See docs/review.md. Nothing here imports the web framework: the routes live in
`polyfuse.serve.http.review`.
"""
