"""The explicit list of audit methods, in report order (no import-time magic).

A test fails when a module in :mod:`audit.methods` is missing here or has no test module.
"""

from __future__ import annotations

from audit.core.method import AuditMethod
from audit.errors import InvalidConfigError, did_you_mean
from audit.methods.agreement import Agreement
from audit.methods.attribution_significance import AttributionSignificance
from audit.methods.connection_weights import ConnectionWeights
from audit.methods.counterfactual_sensitivity import CounterfactualSensitivity
from audit.methods.counterfactuals import Counterfactuals
from audit.methods.fairness import Fairness
from audit.methods.gradcam import GradCam
from audit.methods.lime import Lime
from audit.methods.performance import Performance
from audit.methods.permutation_significance import PermutationSignificance
from audit.methods.saliency import Saliency
from audit.methods.shap import Shap
from audit.methods.surrogate import Surrogate

METHODS: tuple[type[AuditMethod], ...] = (
    Performance,  # first: the report opens with the model's overall performance
    Fairness,
    Surrogate,
    # Attribution methods: agreement reads their Attributions in this order (its seeded
    # faithfulness curves draw their rows in it), so a new one goes after the existing ones.
    ConnectionWeights,
    Shap,
    Lime,
    Saliency,
    GradCam,
    Counterfactuals,
    CounterfactualSensitivity,
    PermutationSignificance,
    AttributionSignificance,
    Agreement,  # must stay last: it compares the attribution methods that ran before it
)


def method_names() -> list[str]:
    return [m.name for m in METHODS]


def get_method(name: str) -> type[AuditMethod]:
    for m in METHODS:
        if m.name == name:
            return m
    raise InvalidConfigError(f"Unknown audit method {name!r}.{did_you_mean(name, method_names())} "
                             f"Methods: {', '.join(method_names())}.")


__all__ = ["METHODS", "get_method", "method_names"]
