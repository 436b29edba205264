"""The training recipe: how a model was trained, so that methods can retrain it the same way.

One type, :class:`Recipe`, for both trainers (:mod:`audit.train.batched` for MLPs,
:mod:`audit.train.functional` for any torch module), one parser and one set of defaults.

Layers, later ones overriding earlier ones: the estimator's own parameters (scikit-learn MLPs),
a ``training.json`` beside the model file, the config's ``[model] training`` table, and the
method's own ``recipe`` option (:func:`gather_recipe`). The returned source string names the
layers used, for the report and for every error.

Defaults (a key the recipe leaves out; the result lists them as defaulted) are torch's:
``weight_decay = 0`` (``torch.optim``'s default), no validation split (``validation_fraction``
unset: every training row is fitted), Adam's ``betas``/``eps``, ``seed = 0``. Every bundled
example's ``training.json`` states its own ``weight_decay`` and, where its ``train.py`` holds rows
out at random, its ``validation_fraction``; the macro LSTM validates on a later period instead,
which ``[data] train_time_range`` reproduces, so it has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.method import Constraint, Either, Interval, Options, option_message
from audit.core.userfiles import load_json
from audit.errors import CapabilityError, InvalidConfigError, did_you_mean

# Keys a training recipe must provide (the rest have defaults that are reported).
REQUIRED_KEYS = ("optimizer", "lr", "epochs", "batch_size")
LOSSES = ("bce", "ce", "mse")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Spellings of a loss as training.json files write them; the first word counts, so
# "mse (standardized change)" is "mse".
_LOSS_WORDS = {"bce": "bce", "binary_cross_entropy": "bce", "ce": "ce", "cross_entropy": "ce",
               "crossentropy": "ce", "mse": "mse"}
# Keys that describe the training without changing a refit: kept in ``described``.
DESCRIPTIVE_KEYS = ("selection", "data", "notes", "description")

_POSITIVE = Interval(0, None, closed="neither")
_COUNT = Interval(1, None)
# key -> (kind, rule); kind is how the value is read, the rule is checked after reading.
_KEYS: dict[str, tuple[str, Constraint | None]] = {
    "loss": ("loss", Options(LOSSES)),
    "optimizer": ("word", Options(OPTIMIZERS)),
    "lr": ("number", _POSITIVE),
    "betas": ("pair", Interval(0, 1, closed="left")),
    "eps": ("number", _POSITIVE),
    "momentum": ("number", Interval(0, 1, closed="left")),
    "weight_decay": ("number", Interval(0, None)),
    "decay_biases": ("bool", None),
    "epochs": ("integer", _COUNT),
    "batch_size": ("batch", Either((Options(("full",)), _COUNT))),
    "validation_fraction": ("number", Interval(0, 0.9, closed="neither")),
    "n_restarts": ("integer", _COUNT),
    "seed": ("integer", Interval(0, 2**32 - 1)),
    "schedule_seed": ("integer", Interval(0, 2**32 - 1)),
    "loss_scale": ("scale", _POSITIVE),
    "selection": ("word", Options(("validation_loss",))),
    "data": ("table", None),
    "notes": ("text", None),
    "description": ("text", None),
}
_RULES = {"number": "a number", "integer": "an integer", "pair": "a list of two numbers",
          "bool": "true or false", "batch": 'an integer or "full"', "table": "a table",
          "text": "a string", "word": "a string", "loss": "a string", "scale": "a number or a buffer name"}


@dataclass(frozen=True)
class Recipe:
    """How a network is (re)trained: the keys of ``training.json`` / ``[model.training]``.

    Parameters
    ----------
    loss : {"bce", "ce", "mse"}
        Mean binary cross-entropy on one logit, mean softmax cross-entropy, mean squared error
        (``"cross_entropy"`` and ``"binary_cross_entropy"`` are read as ``"ce"`` and ``"bce"``).
    optimizer : {"adam", "adamw", "sgd"}
        ``torch.optim`` semantics: Adam's ``weight_decay`` is an L2 term added to the gradient,
        AdamW's is decoupled, SGD's is added to the gradient (with optional ``momentum``).
    lr, betas, eps, momentum, weight_decay : float
    decay_biases : bool
        Whether weight decay applies to biases too (torch's default: yes; scikit-learn: no).
    epochs : int
    batch_size : int or None
        Rows per step; ``"full"`` (None) is one full-batch step per epoch. Mini-batch epochs
        reshuffle the rows with ``torch.randperm`` from one generator seeded once per training
        run (``schedule_seed``, default ``seed``), so the schedule is deterministic and shared.
    validation_fraction : float or None
        Share of training rows held out (``default_rng(seed).permutation(n)[:round(f n)]``, as
        the examples' ``train.py`` draw it) to compare random restarts; None fits every row.
    n_restarts : int
        Random starts (Olden & Jackson's step 1; used by ``connection_weights``).
    seed : int
        Restart ``r`` initialises with ``torch.manual_seed(seed + r)``.
    schedule_seed : int or None
        Seed of the shuffling generator when it differs from ``seed``.
    loss_scale : float, str or None
        Divides the residual of an MSE loss: a number or the name of a buffer of the module.
    selection, data, notes, description
        Describe the training without changing a refit (``selection`` must be
        ``"validation_loss"``: restarts are compared by validation loss); kept in ``described``.

    Examples
    --------
    >>> r = Recipe.from_mapping({"optimizer": "adam", "lr": 0.01, "epochs": 8, "batch_size": 256},
    ...                         source="training.json", loss="bce")
    >>> r.loss, r.weight_decay, r.validation_fraction, "weight_decay" in r.defaulted
    ('bce', 0.0, None, True)
    >>> Recipe.from_mapping({"optimizer": "adam", "lr": 0.01, "epochs": 8, "batch_size": 256,
    ...                      "weight_decy": 0.1}, source="training.json")
    Traceback (most recent call last):
    ...
    audit.errors.InvalidConfigError: The training recipe from training.json has no key 'weight_decy'. Did you mean 'weight_decay'? Keys: batch_size, betas, data, decay_biases, description, epochs, eps, loss, loss_scale, lr, momentum, n_restarts, notes, optimizer, schedule_seed, seed, selection, validation_fraction, weight_decay.
    """

    loss: str = "bce"
    optimizer: str = "adam"
    lr: float = 0.01
    epochs: int = 5
    batch_size: int | None = 256
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0
    decay_biases: bool = True
    validation_fraction: float | None = None
    n_restarts: int = 10
    seed: int = 0
    schedule_seed: int | None = None
    loss_scale: float | str | None = None
    defaulted: tuple[str, ...] = field(default=(), compare=False)
    described: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], *, source: str, loss: str | None = None) -> Recipe:
        """Parse a recipe table; a missing, unknown or malformed key is an error naming it.

        ``loss`` is the loss the model's output implies, used when the recipe names none.
        """
        where = f"the training recipe from {source}"
        unknown = sorted(set(doc) - set(_KEYS), key=str)
        if unknown:
            raise InvalidConfigError(
                f"The training recipe from {source} has no key {unknown[0]!r}."
                f"{did_you_mean(unknown[0], _KEYS)} Keys: {', '.join(sorted(_KEYS))}.")
        missing = [k for k in REQUIRED_KEYS if k not in doc]
        if missing:
            raise InvalidConfigError(
                f"The training recipe from {source} lacks the key(s) {', '.join(map(repr, missing))}; "
                "a refit must use the recipe the model was trained with. Add them to [model.training], "
                "to training.json beside the model, or to the method's 'recipe' option "
                "(batch_size may be \"full\").")
        values: dict[str, Any] = {}
        for key, raw in doc.items():
            kind, rule = _KEYS[key]
            value = _read(kind, raw)
            if value is _BAD:
                raise InvalidConfigError(option_message(key, _RULES[kind], raw, section=where, noun="key"))
            items = value if kind == "pair" else (value,)
            if rule is not None and not all(rule.allows("full" if v is None and kind == "batch" else v)
                                            for v in items):
                raise InvalidConfigError(option_message(key, rule.rule(), raw, section=where, noun="key"))
            if key not in DESCRIPTIVE_KEYS:
                values[key] = value
        if "loss" not in values:
            if loss is None:
                raise InvalidConfigError(option_message("loss", Options(LOSSES).text(), None,
                                                        section=where, noun="key"))
            values["loss"] = loss
        fields = [f for f in cls.__dataclass_fields__ if f not in ("defaulted", "described")]
        return cls(**values, defaulted=tuple(sorted(k for k in fields if k not in doc)),
                   described=tuple(k for k in DESCRIPTIVE_KEYS if k in doc))

    def to_json(self) -> dict[str, Any]:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
               if k not in ("defaulted", "described")}
        return out | {"batch_size": self.batch_size or "full"}

    @property
    def shuffle_seed(self) -> int:
        """The seed of the schedule's shuffling generator (``schedule_seed``, else ``seed``)."""
        return self.seed if self.schedule_seed is None else self.schedule_seed

    def step_rows(self, n: int) -> int:
        """Rows per optimizer step when fitting ``n`` rows."""
        return n if self.batch_size is None else min(self.batch_size, n)

    def fit_rows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(fit, validation)`` row indices, the fit rows in the order ``train.py`` uses them."""
        if self.validation_fraction is None:
            return np.arange(n), np.arange(0)
        perm = np.random.default_rng(self.seed).permutation(n)
        n_val = int(round(self.validation_fraction * n))
        return perm[n_val:], perm[:n_val]

    def batches(self, n: int, seed: int | None = None) -> list[Any]:
        """Row indices of every optimizer step, in order (None = all rows), shuffled by a
        generator seeded ``seed`` (default :attr:`shuffle_seed`)."""
        import torch

        if self.batch_size is None:
            return [None] * self.epochs
        gen = torch.Generator().manual_seed(int(self.shuffle_seed if seed is None else seed))
        out = []
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            out += [order[s:s + self.batch_size] for s in range(0, n, self.batch_size)]
        return out


_BAD = object()


def _read(kind: str, value: Any) -> Any:
    """``value`` read as ``kind``, or ``_BAD`` when it is not one."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "number":
        return float(value) if number else _BAD
    if kind == "integer":
        return int(value) if number and int(value) == value else _BAD
    if kind == "pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return _BAD
        return tuple(float(v) for v in value)
    if kind == "bool":
        return value if isinstance(value, bool) else _BAD
    if kind == "batch":
        if isinstance(value, str):
            return None if value.strip().lower() == "full" else _BAD
        return _read("integer", value)
    if kind == "scale":
        return value if isinstance(value, str) and value else _read("number", value)
    if kind == "table":
        return dict(value) if isinstance(value, Mapping) else _BAD
    if not isinstance(value, str):
        return _BAD
    if kind == "loss":
        word = value.strip().lower().split(" ")[0].split("(")[0]
        return _LOSS_WORDS.get(word, value)
    return value.strip().lower() if kind == "word" else value


def gather_recipe(model: ModelAdapter, training: Mapping[str, Any], option: Mapping[str, Any], *,
                  method: str, action: str,
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
            f"{', '.join(REQUIRED_KEYS)} (and loss, weight_decay, ...) in [model.training], in a "
            f"training.json beside the model, or in [methods.{method}] recipe")
    return merged, " < ".join(sources)


def resolve_recipe(model: ModelAdapter, training: Mapping[str, Any], option: Mapping[str, Any], *,
                   method: str, action: str, loss: str | None,
                   derived: Mapping[str, Any] | None = None) -> tuple[Recipe, str]:
    """The recipe a method retrains with: :func:`gather_recipe`'s layers, parsed once."""
    merged, source = gather_recipe(model, training, option, method=method, action=action, derived=derived)
    return Recipe.from_mapping(merged, source=source, loss=loss), source


__all__ = ["DESCRIPTIVE_KEYS", "LOSSES", "OPTIMIZERS", "REQUIRED_KEYS", "Recipe", "gather_recipe",
           "resolve_recipe"]
