"""polyfuse's firewall inside other tools' pipelines.

* `polyfuse.guard.interop.presidio`: the validated recognizers as Presidio
  ``EntityRecognizer`` subclasses, for a user's own ``AnalyzerEngine``
  (``registry.add_recognizer``).
* `polyfuse.guard.interop.llm_guard`: LLM Guard-style input scanners (``scan(prompt) ->
  (sanitized, valid, risk)``) over a `polyfuse.guard.engine.Guard` and its policy, and
  `scan_prompt` to chain them.

Nothing here is imported by the rest of polyfuse; import the module you need.
"""
