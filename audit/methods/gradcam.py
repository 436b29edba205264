"""Grad-CAM for convolutional image models, through captum.

Grad-CAM (Selvaraju et al. 2017) weights each channel of a convolutional layer's output by the
mean gradient of a class's score over that channel's positions, sums the weighted channels and
keeps the positive part: a coarse, class-discriminative map at the layer's own resolution. Here:

- the layer is the model's **last** ``Conv2d`` (found automatically, in registration order) or
  the one named by the ``layer`` option;
- the class is each row's predicted class; its score is the model's output before any softmax
  or sigmoid (a one-logit binary model's logit for the positive class, its negative for the
  negative class), or the probability for a model that outputs probabilities;
- captum's ``LayerGradCam`` computes the map, ``LayerAttribution.interpolate`` upsamples it to
  the input's height and width (bilinear by default) and every channel of a pixel carries it.

What it is not: the map has the layer's resolution (a 4 × 4 layer gives 16 distinct regions,
however smooth the upsampled picture looks), the channel weights are averages over every
position, so a model that reads *where* a pattern is from a map active everywhere gets a map
that follows the activations, not the position; and it says nothing about negative evidence.
Other methods read it as :class:`~audit.core.results.Attributions` (agreement's rankings,
sanity check and faithfulness curves).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from audit.core.adapter import ModelAdapter
from audit.core.attribution import (ModalAttribution, bootstrap_mean_abs, check_finite, map_figures,
                                    modal_attribution, sample_rows)
from audit.core.dataset import AuditData
from audit.core.method import AuditMethod, Finding, MethodConfig, MethodResult, OptionError, RunContext
from audit.core.results import Attributions, Estimate, estimates
from audit.errors import CapabilityError, InvalidConfigError, did_you_mean

LABEL = "Grad-CAM"


@dataclass(frozen=True)
class GradCamConfig(MethodConfig):
    """Options of Grad-CAM.

    layer : the convolutional layer whose maps are weighted, by its name in the module
        (e.g. ``"features.2"``); ``"auto"``: the last ``Conv2d`` of the model.
    upsample : how the layer's map is brought to the input's size: ``"bilinear"`` (smooth, as
        in the Grad-CAM paper) or ``"nearest"`` (blocks that show the layer's resolution).
    n_rows : rows sampled (seeded) for the class-average maps and the totals per group.
    n_per_class : example maps per predicted class.
    n_bootstrap : bootstrap resamples of the rows for the intervals of the totals per group.
    """

    layer: str = "auto"
    upsample: Literal["bilinear", "nearest"] = "bilinear"
    n_rows: int = 200
    n_per_class: int = 2
    n_bootstrap: int = 200

    def validate(self) -> None:
        if not self.layer.strip():
            raise OptionError("layer", 'a layer\'s name or "auto"', self.layer)


@dataclass(frozen=True)
class GradCamResult(MethodResult):
    layer: str                               # the layer's name in the module
    layer_chosen: str                        # "the last Conv2d of the model" or "named in the config"
    layer_size: tuple[int, int]              # (height, width) of the layer's maps
    input_size: tuple[int, int]
    upsample: str
    explained: str
    n_rows: int
    n_available: int
    sampled: bool
    empty_share: float                       # rows whose map is zero everywhere (no positive evidence)
    # grouping -> group -> mean over rows of the map's mean over the group, with its interval
    group_importance: dict[str, dict[str, Estimate]]
    modal: ModalAttribution
    _values: np.ndarray | None = None        # (n, C*H*W) upsampled maps (not serialised)
    _rows: np.ndarray | None = None
    _elements: tuple[str, ...] = ()          # the layout's element names, in ``_values`` order

    def attributions(self) -> tuple[Attributions, ...]:
        """The upsampled maps per pixel of every explained row, re-runnable on another model."""
        if self._values is None or self._rows is None:
            return ()
        names = self._elements
        return (Attributions(
            key="gradcam", label=LABEL, short="GradCAM", origin=f"gradcam: layer {self.layer}",
            features=names, grouping="element", explains="predicted_class", explained=self.explained,
            importance=estimates(names, np.abs(self._values).mean(axis=0)), values=self._values,
            rows=self._rows, how="mean",
            recompute=functools.partial(recompute, layer=self.layer, upsample=self.upsample)),)


# --------------------------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------------------------


def conv_layers(module: Any) -> dict[str, Any]:
    """Name -> every ``Conv2d`` of ``module``, in registration order."""
    import torch

    return {name: sub for name, sub in module.named_modules() if isinstance(sub, torch.nn.Conv2d)}


def find_layer(model: ModelAdapter, layer: str) -> tuple[str, Any]:
    """The layer Grad-CAM weights: the last ``Conv2d``, or the one named ``layer``."""
    module = getattr(model, "module", None)
    convs = conv_layers(module) if module is not None else {}
    if not convs:
        raise CapabilityError(f"Grad-CAM needs a convolutional (Conv2d) layer; {model.description} has none")
    if layer == "auto":
        name = list(convs)[-1]
        return name, convs[name]
    if layer not in convs:
        raise InvalidConfigError(f"The 'layer' option of gradcam names {layer!r}, which is not a Conv2d "
                                 f"layer of the model.{did_you_mean(layer, list(convs))} Conv2d layers: "
                                 f"{', '.join(convs)}.")
    return layer, convs[layer]


def class_scores(model: ModelAdapter, x: Any) -> Any:
    """(n, n_classes) scores before any softmax or sigmoid (probabilities for a model that
    outputs them): what Grad-CAM differentiates."""
    import torch

    out = model.module(x)
    if out.ndim == 1:
        out = out[:, None]
    if out.shape[1] == 1:  # one logit (or one probability) of the positive class
        out = torch.cat([-out, out] if getattr(model, "output_kind", "logit") == "logit" else [1 - out, out], 1)
    return out


def gradcam_maps(model: ModelAdapter, X: np.ndarray, targets: np.ndarray, *, layer: str,
                 upsample: str = "bilinear", batch_rows: int = 256) -> tuple[np.ndarray, tuple[int, int]]:
    """Grad-CAM maps of ``targets`` upsampled to the input: (n, C*H*W) (every channel of a pixel
    carries the pixel's value) and the layer's (height, width).

    Examples
    --------
    >>> import torch
    >>> from audit.core.adapter import as_adapter
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4, 2)).eval()
    >>> maps, size = gradcam_maps(as_adapter(net, task="binary"), np.ones((3, 1, 2, 2), np.float32),
    ...                           np.array([1, 1, 0]), layer="0")
    >>> maps.shape, size
    ((3, 4), (2, 2))
    """
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    _, conv = find_layer(model, layer)
    shape = X.shape[1:]
    cam = LayerGradCam(lambda x: class_scores(model, x), conv)
    out, size = [], (0, 0)
    for start in range(0, len(X), batch_rows):
        x = torch.as_tensor(np.asarray(X[start:start + batch_rows]), dtype=torch.float32)
        t = torch.as_tensor(np.asarray(targets[start:start + batch_rows]), dtype=torch.long)
        a = cam.attribute(x, target=t, relu_attributions=True)         # (n, 1, h, w)
        size = (int(a.shape[-2]), int(a.shape[-1]))
        up = LayerAttribution.interpolate(a, tuple(shape[-2:]), interpolate_mode=upsample)
        up = up.expand(-1, shape[0], -1, -1) if len(shape) == 3 else up
        out.append(up.detach().double().reshape(len(x), -1).numpy())
    return np.concatenate(out, axis=0), size


def predicted_classes(model: ModelAdapter, X: np.ndarray) -> np.ndarray:
    """Each row's predicted class index (binary: 1 at or above the threshold)."""
    scores = np.asarray(model.output(X))
    if scores.ndim == 1 or scores.shape[1] == 1:
        return (scores.reshape(-1) >= model.threshold).astype(int)
    return np.argmax(scores, axis=1)


def recompute(model: ModelAdapter, data: AuditData, rows: np.ndarray, *, baseline: np.ndarray,
              background: np.ndarray, seed: int, targets: np.ndarray | None, layer: str,
              upsample: str) -> np.ndarray:
    """:class:`Attributions.recompute`: the same layer's maps on ``model`` (e.g. a re-initialized
    copy); Grad-CAM uses no baseline, background or random draws."""
    X = data.X[rows]
    return gradcam_maps(model, X, predicted_classes(model, X) if targets is None else targets,
                        layer=layer, upsample=upsample)[0]


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class GradCam(AuditMethod[GradCamConfig, GradCamResult]):
    """Grad-CAM maps of each row's predicted class at a CNN's last convolutional layer."""

    name = "gradcam"
    title = "Grad-CAM (convolutional layer maps)"
    requires = frozenset({"torch", "gradients"})
    libraries = ("captum.attr",)
    tasks = frozenset({"binary", "multiclass"})
    modalities = frozenset({"image"})
    Config = GradCamConfig

    def skip_reason(self, model: ModelAdapter, data: AuditData, config: GradCamConfig) -> str | None:
        reason = super().skip_reason(model, data, config)
        if reason is None and not conv_layers(model.module):  # type: ignore[attr-defined]
            reason = f"needs a convolutional (Conv2d) layer; {model.description} has none"
        return reason

    def run(self, model: ModelAdapter, data: AuditData, config: GradCamConfig,
            ctx: RunContext) -> GradCamResult:
        check_finite(data.X, "Grad-CAM")
        layer, _ = find_layer(model, config.layer)
        rows, sampled = sample_rows(data.n_rows, config.n_rows, ctx.rng)
        X = data.X[rows]
        classes = predicted_classes(model, X)
        values, size = gradcam_maps(model, X, classes, layer=layer, upsample=config.upsample)
        ctx.progress(1, 2)
        lay = data.layout
        scored = "probability" if getattr(model, "output_kind", "logit") == "probability" else "score (logit)"
        unit = f"the predicted class's {scored}"
        modal = modal_attribution(values, data, rows, method=self.name, unit=unit, how="mean",
                                  classes=classes, n_per_class=config.n_per_class)
        group_imp = {}
        for by in lay.groupings:
            per = lay.group_values(values, by, "mean")
            band = bootstrap_mean_abs(per, n_bootstrap=config.n_bootstrap, rng=ctx.rng)
            group_imp[by] = band.estimates(list(lay.groups(by)))
        ctx.progress(2, 2)
        return GradCamResult(
            layer=layer, layer_chosen=("the last Conv2d of the model" if config.layer == "auto"
                                       else "named in the config"),
            layer_size=size, input_size=(lay.height, lay.width), upsample=config.upsample,
            explained=f"the {scored} of each row's predicted class", n_rows=len(rows),
            n_available=data.n_rows, sampled=sampled,
            empty_share=float(np.mean(~(values > 0).any(axis=1))) if len(values) else 0.0,
            group_importance=group_imp, modal=modal, _values=values, _rows=np.asarray(rows, dtype=int),
            _elements=tuple(data.feature_names))

    def plan(self, model: ModelAdapter, data: AuditData, config: GradCamConfig, ctx: RunContext) -> Any:
        """One forward and backward pass per explained row (through torch, not counted at the
        adapter) and one model pass to find each row's predicted class."""
        from audit.core.cost import Plan, Reducible

        find_layer(model, config.layer)  # a wrong layer name stops the run before any work
        rows = min(config.n_rows, data.n_rows)
        return Plan(f"Grad-CAM at one layer on {rows:,} rows", model_rows=rows, model_calls=1,
                    uncounted_rows=3 * rows,
                    reducible={"n_rows": Reducible(min(50, rows), "rows", current=rows)})

    def findings(self, result: GradCamResult, config: GradCamConfig) -> list[Finding]:
        out = []
        for by, imp in result.group_importance.items():
            top = sorted(imp, key=lambda g: -(imp[g].value or 0.0))[:3]
            out.append(Finding("info", f"Grad-CAM at layer {result.layer} ({result.layer_size[0]}×"
                                       f"{result.layer_size[1]} maps, upsampled to {result.input_size[0]}×"
                                       f"{result.input_size[1]}) puts most weight on {', '.join(top)} "
                                       f"over {result.n_rows:,} rows."))
        if result.layer_size[0] * result.layer_size[1] <= 4:
            out.append(Finding("warning", f"Grad-CAM's layer {result.layer} has only "
                                          f"{result.layer_size[0]}×{result.layer_size[1]} positions: its maps "
                                          "cannot tell apart regions smaller than a quarter of the image."))
        return out

    def figures(self, result: GradCamResult, data: AuditData) -> dict[str, Any]:
        return map_figures(result.modal, LABEL, by_class=True)


__all__ = ["GradCam", "GradCamConfig", "GradCamResult", "class_scores", "find_layer", "gradcam_maps"]
