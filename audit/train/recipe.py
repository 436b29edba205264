"""Where a model's training recipe comes from, for methods that retrain it.

Layers, later ones overriding earlier ones: the estimator's own parameters (scikit-learn MLPs),
a ``training.json`` beside the model file, the config's ``[model] training`` table, and the
method's own ``recipe`` option. The returned source string names the layers used, for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from audit.core.adapter import ModelAdapter
from audit.core.userfiles import load_json
from audit.errors import CapabilityError, InvalidConfigError


def gather_recipe(model: ModelAdapter, training: Mapping[str, Any], option: Mapping[str, Any], *,
                  method: str, required: Sequence[str], action: str,
                  derived: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Merge the recipe layers; raise CapabilityError (the method is skipped) when none exists.

    ``action`` completes the skip reason, e.g. "refitting the network"; ``derived`` is a recipe
    read off the estimator itself, the lowest layer.
    """
    merged: dict[str, Any] = {}
    sources: list[str] = []
    if derived is not None:
        merged.update(derived)
        sources.append("the scikit-learn estimator's parameters")
    for rec in getattr(model, "loaded", ()):
        path = Path(rec.path).parent / "training.json"
        if rec.role in ("weights", "model") and path.is_file():
            doc = load_json(path, "training recipe")
            if not isinstance(doc, dict):
                raise InvalidConfigError(f"The training recipe {str(path)!r} must be a JSON object.")
            merged.update(doc)
            sources.append(f"{path.name} beside the model")
            break
    if training:
        merged.update(dict(training))
        sources.append("[model.training]")
    if option:
        merged.update(dict(option))
        sources.append(f"[methods.{method}] recipe")
    if not sources:
        raise CapabilityError(
            f"{action} needs its training recipe, and none was found: give the keys "
            f"{', '.join(required)} (and loss, weight_decay, ...) in [model.training], in a "
            f"training.json beside the model, or in [methods.{method}] recipe")
    return merged, " < ".join(sources)


__all__ = ["gather_recipe"]
