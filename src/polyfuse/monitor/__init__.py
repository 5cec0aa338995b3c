"""Monitoring: is the model still seeing what it was trained on, and does the change hurt?

- `observe` runs a classifier over a manifest and keeps statistics, embeddings and
  outputs per modality (`Observations`), never raw content;
- `ReferenceProfile` is that for the reference data (written into the artifact at
  training time), plus what is fitted on it;
- `polyfuse.monitor.detectors` compare current data with the reference, one small config
  + ``calculate`` each; `assess` and `monitor` turn them into per-modality decisions over
  windows, with label-free accuracy estimates (`polyfuse.monitor.estimate`).
"""

from polyfuse.monitor.observe import ModalityView, Observations, concat, observe
from polyfuse.monitor.profile import PROFILE_DIR, ReferenceProfile, build_profile
from polyfuse.monitor.run import Assessment, Decision, MonitorReport, assess, monitor

__all__ = [
    "PROFILE_DIR",
    "Assessment",
    "Decision",
    "ModalityView",
    "MonitorReport",
    "Observations",
    "ReferenceProfile",
    "assess",
    "build_profile",
    "concat",
    "monitor",
    "observe",
]
