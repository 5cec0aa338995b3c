"""Several versions of a model in one service (issue 17): a champion, a canary that takes a
share of the callers, a shadow that answers a copy of the traffic nobody sees, and the
canary's automatic rollback.

- `routing`: which callers the canary answers (a sticky hash of the caller);
- `shadow`: the shadow's bounded queue, run after the champion has answered;
- `ledger`: per-version counters, latency histogram, agreement and feedback;
- `sources`: a version from a folder or a ``models:/`` URI, and its name;
- `records`: a decision about the canary, a copied request, the shadow's answer;
- `runtime`: `VersionedRuntime`, the `polyfuse.serve.types.Runtime` over the versions,
  which feeds `polyfuse.release.canary.CanaryJudge` and acts on its verdicts.
"""
