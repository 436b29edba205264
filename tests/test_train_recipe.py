"""One training recipe for both trainers: one parser, one set of defaults, unknown keys refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audit.errors import InvalidConfigError
from audit.train.batched import FixedTargets, MLPSpec, torch_default_init, train_batched, train_looped
from audit.train.functional import train_functional, train_sequential
from audit.train.recipe import Recipe, gather_recipe, resolve_recipe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BASE = {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 16}


@pytest.mark.parametrize("name, weight_decay, validation_fraction, batch_size", [
    ("adult_mlp", 1e-4, 0.2, 256),
    ("digits_cnn", 1e-4, 0.15, 64),
    ("macro_lstm", 1e-3, None, None),   # full batch: the audit.toml's recipe option says so
])
def test_every_bundled_training_json_parses_as_the_one_recipe(name, weight_decay, validation_fraction, batch_size):
    doc = json.loads((EXAMPLES / name / "training.json").read_text())
    doc.setdefault("batch_size", "full")
    recipe = Recipe.from_mapping(doc, source="training.json", loss="mse")
    assert recipe.weight_decay == weight_decay and recipe.validation_fraction == validation_fraction
    assert recipe.batch_size == batch_size
    assert "weight_decay" not in recipe.defaulted


def test_defaults_are_torchs_and_are_listed_as_defaulted():
    recipe = Recipe.from_mapping(BASE, source="x", loss="bce")
    assert (recipe.weight_decay, recipe.validation_fraction, recipe.decay_biases) == (0.0, None, True)
    assert (recipe.betas, recipe.eps, recipe.momentum, recipe.seed) == ((0.9, 0.999), 1e-8, 0.0, 0)
    assert {"weight_decay", "validation_fraction", "betas", "loss"} <= set(recipe.defaulted)
    assert recipe.fit_rows(10)[1].size == 0  # no validation split: every row is fitted


def test_descriptive_keys_are_kept_apart_from_the_recipe():
    recipe = Recipe.from_mapping(BASE | {"data": {"window": 8}, "selection": "validation_loss",
                                         "notes": "n"}, source="x", loss="bce")
    assert recipe.described == ("selection", "data", "notes")
    with pytest.raises(InvalidConfigError, match=r"'selection' key in the training recipe from x must be one of "
                                                 r"\"validation_loss\". Got 'accuracy' instead"):
        Recipe.from_mapping(BASE | {"selection": "accuracy"}, source="x", loss="bce")


@pytest.mark.parametrize("layer", ["training.json", "[model.training]", "recipe option"])
def test_an_unknown_key_is_an_error_with_did_you_mean_in_every_layer(layer, tmp_path):
    doc = BASE | {"weight_decy": 0.1}
    if layer == "training.json":
        (tmp_path / "training.json").write_text(json.dumps(doc))
    model = SimpleNamespace(loaded=[SimpleNamespace(role="weights", path=str(tmp_path / "m.pt"))])
    training = doc if layer == "[model.training]" else {}
    option = doc if layer == "recipe option" else {}
    with pytest.raises(InvalidConfigError, match=r"has no key 'weight_decy'. Did you mean 'weight_decay'\?"):
        resolve_recipe(model, training, option, method="m", action="refitting", loss="bce")


@pytest.mark.parametrize("key, value, rule", [
    ("lr", -1.0, "greater than 0"),
    ("lr", "fast", "a number"),
    ("epochs", 2.5, "an integer"),
    ("batch_size", "half", 'an integer or "full"'),
    ("batch_size", 0, '"full" or at least 1'),
    ("betas", [0.9], "a list of two numbers"),
    ("validation_fraction", 0.95, "greater than 0 and less than 0.9"),
    ("loss", "hinge", 'one of "bce", "ce", "mse"'),
    ("optimizer", "lbfgs", 'one of "adam", "adamw", "sgd"'),
    ("decay_biases", 0, "true or false"),
])
def test_a_malformed_value_names_the_key_the_rule_and_the_value(key, value, rule):
    with pytest.raises(InvalidConfigError) as info:
        Recipe.from_mapping(BASE | {key: value}, source="training.json", loss="bce")
    text = str(info.value)
    assert f"The {key!r} key in the training recipe from training.json must be {rule}" in text
    assert f"Got {value!r} instead." in text


def test_missing_keys_are_named_and_a_missing_recipe_skips_with_the_keys():
    with pytest.raises(InvalidConfigError, match="lacks the key\\(s\\) 'lr', 'epochs'"):
        Recipe.from_mapping({"optimizer": "adam", "batch_size": 8}, source="training.json")
    from audit.errors import CapabilityError

    with pytest.raises(CapabilityError, match="optimizer, lr, epochs, batch_size"):
        gather_recipe(SimpleNamespace(loaded=[]), {}, {}, method="m", action="refitting")


def test_decay_biases_false_keeps_weight_decay_off_the_biases_in_the_functional_trainer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    theta0 = {k: v.detach().clone() for k, v in net.state_dict().items()}
    X, Y = torch.randn(24, 3), torch.randn(2, 24)
    recipe = Recipe.from_mapping({"optimizer": "sgd", "lr": 0.1, "epochs": 3, "batch_size": 8, "loss": "mse",
                                  "weight_decay": 0.5, "decay_biases": False}, source="x")
    # reference: torch.optim with the biases in a group without decay
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    ref.load_state_dict(theta0)
    named = dict(ref.named_parameters())
    opt = torch.optim.SGD([{"params": [p for n, p in named.items() if not n.endswith("bias")]},
                           {"params": [p for n, p in named.items() if n.endswith("bias")], "weight_decay": 0.0}],
                          lr=0.1, weight_decay=0.5)
    for idx in recipe.batches(24):
        opt.zero_grad()
        torch.mean((ref(X[idx])[:, 0] - Y[0, idx]) ** 2).backward()
        opt.step()
    seq = train_sequential(net, theta0, X, Y, recipe, networks=[0])[0]
    fit = train_functional(net, theta0, X, Y, recipe, n_workers=1)
    for name, p in ref.named_parameters():
        assert torch.allclose(seq[name], p, atol=1e-6), name
        assert torch.allclose(fit.params[name][0], p, atol=1e-5), name
    decayed = train_sequential(net, theta0, X, Y, Recipe(**{**recipe.__dict__, "decay_biases": True}), networks=[0])[0]
    assert not torch.allclose(decayed["0.bias"], seq["0.bias"])


def test_a_full_batch_recipe_trains_the_batched_mlp_as_the_looped_reference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -1.0, 0.5]) + rng.normal(size=50) * 0.1).astype(np.float32)
    spec = MLPSpec((3, 4, 1), ("sigmoid",))
    recipe = Recipe.from_mapping({"optimizer": "adam", "lr": 0.05, "epochs": 5, "batch_size": "full",
                                  "loss": "mse"}, source="x")
    init = torch_default_init(spec, 0)
    fit = train_batched(X, FixedTargets(y, 1), spec, recipe, init, schedule_seed=0, n_workers=1)
    ref = train_looped(X, FixedTargets(y, 1), spec, recipe, init, schedule_seed=0, networks=[0])
    assert np.abs(fit.weights.W[0][0] - ref.weights.W[0][0]).max() < 2e-5
