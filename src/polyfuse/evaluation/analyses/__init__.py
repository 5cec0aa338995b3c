"""The analyses of ``polyfuse evaluate --out``: each a small config plus ``calculate``.

Each analysis is a frozen dataclass holding only its own parameters (serializable, e.g.
``Agreement(confident=0.8)``) with ``calculate(context) -> typed result``; `analyze` in
`polyfuse.evaluation.analysis` builds the shared `AnalysisContext` once and loops over them.
"""

from polyfuse.evaluation.analyses.base import AnalysisContext, AnalysisSpec, Result
from polyfuse.evaluation.analyses.errors import (
    Agreement,
    AgreementResult,
    Failures,
    FailuresResult,
    Saliency,
    SaliencyResult,
)
from polyfuse.evaluation.analyses.groups import (
    Metrics,
    Robustness,
    RobustnessResult,
    Slices,
    SlicesResult,
)
from polyfuse.evaluation.analyses.subsets import (
    Ablation,
    AblationResult,
    Contributions,
    ContributionsResult,
)
from polyfuse.evaluation.analyses.sync import Sync, SyncResult

__all__ = [
    "Ablation",
    "AblationResult",
    "Agreement",
    "AgreementResult",
    "AnalysisContext",
    "AnalysisSpec",
    "Contributions",
    "ContributionsResult",
    "Failures",
    "FailuresResult",
    "Metrics",
    "Result",
    "Robustness",
    "RobustnessResult",
    "Saliency",
    "SaliencyResult",
    "Slices",
    "SlicesResult",
    "Sync",
    "SyncResult",
]
