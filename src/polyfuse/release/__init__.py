"""Releasing a model: what it is (the model card), whether it may ship (the quality gate)
and where versions live (the model registry on MLflow).

- `polyfuse.release.card`: the model card written into every artifact, filled from
  evaluation results, rendered as Markdown or self-contained HTML;
- `polyfuse.release.gate`: rules on metrics per modality subset and slice, robustness,
  calibration, latency and non-inferiority against a champion;
- `polyfuse.release.registry`: register artifacts on MLflow, resolve ``models:/NAME@alias``,
  move aliases.
"""
