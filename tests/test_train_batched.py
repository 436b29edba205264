"""The batched trainer agrees with the sequential torch.nn/torch.optim loop."""

from __future__ import annotations

import numpy as np
import pytest

from audit.errors import InvalidConfigError
from audit.stats.permutation import permutation_pvalues
from audit.train.batched import (ColumnShuffle, FixedTargets, MLPSpec, PermutedTargets,
                                 torch_default_init, train_batched, train_looped)
from audit.train.recipe import Recipe


def _data(n=240, d=6, seed=0, onehot=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    if onehot:  # mostly zeros: exercises the sparse first layer
        X = np.zeros((n, d), np.float32)
        X[np.arange(n), rng.integers(0, d, n)] = 1.0
        X[:, 0] = rng.normal(size=n)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) > 0).astype(np.float32)
    return X, y


def _max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a.weights.W + a.weights.b, b.weights.W + b.weights.b))


@pytest.mark.parametrize("loss,acts,opt,sparse", [
    ("bce", ("sigmoid",), "adam", False),
    ("bce", ("sigmoid",), "adam", True),
    ("ce", ("tanh", "relu"), "adamw", False),
    ("mse", ("gelu",), "sgd", False),
])
def test_batched_equals_looped(loss, acts, opt, sparse):
    X, y = _data(onehot=sparse)
    if loss == "ce":
        y = np.random.default_rng(1).integers(0, 3, len(y))
        out = 3
    else:
        out = 1
    if loss == "mse":
        y = X[:, 0] + np.random.default_rng(2).normal(size=len(y)).astype(np.float32)
    spec = MLPSpec((X.shape[1], *([5] * len(acts)), out), acts)
    recipe = Recipe(loss=loss, optimizer=opt, lr=0.02, epochs=3, batch_size=32, weight_decay=1e-3,
                    momentum=0.9 if opt == "sgd" else 0.0, decay_biases=opt != "adamw")
    targets = PermutedTargets(y, np.array([-1, 11, 12, 13, 14, 15, 16]))
    init = torch_default_init(spec, 3)
    # tiny chunks and two workers: several chunks run on two threads
    batched = train_batched(X, targets, spec, recipe, init, schedule_seed=5, chunk_mb=0.005,
                            n_workers=2, sparse=sparse)
    assert batched.chunk_size < targets.n_networks
    looped = train_looped(X, targets, spec, recipe, init, schedule_seed=5)
    assert _max_diff(batched, looped) < 2e-5
    assert np.allclose(batched.loss, looped.loss, rtol=1e-4, atol=1e-5)
    assert not batched.diverged.any()


@pytest.mark.parametrize("onehot", [False, True])
def test_per_input_shuffle_equals_looped_with_the_column_permuted(onehot):
    X, y = _data(onehot=onehot)
    spec = MLPSpec((X.shape[1], 4, 1), ("sigmoid",))
    recipe = Recipe(epochs=2, batch_size=40, lr=0.05)
    shuffle = ColumnShuffle([1, 2], np.array([-1, 7, 8, 9]))
    init = torch_default_init(spec, 0)
    a = train_batched(X, FixedTargets(y, 4), spec, recipe, init, schedule_seed=1, shuffle=shuffle)
    b = train_looped(X, FixedTargets(y, 4), spec, recipe, init, schedule_seed=1, shuffle=shuffle)
    assert _max_diff(a, b) < 2e-5
    # slot 0 (identity) is the network trained on the real data
    c = train_looped(X, FixedTargets(y, 1), spec, recipe, init, schedule_seed=1)
    assert np.abs(a.weights.W[0][0] - c.weights.W[0][0]).max() < 2e-5


def test_batched_and_looped_give_identical_pvalues():
    from audit.methods.connection_weights import olden_importance

    X, y = _data(n=160, d=4)
    spec = MLPSpec((4, 3, 1), ("sigmoid",))
    recipe = Recipe(epochs=4, batch_size=32, lr=0.05, weight_decay=1e-3)
    seeds = np.concatenate([[-1], np.arange(100, 119)])
    init = torch_default_init(spec, 0)
    a = train_batched(X, PermutedTargets(y, seeds), spec, recipe, init, schedule_seed=0)
    b = train_looped(X, PermutedTargets(y, seeds), spec, recipe, init, schedule_seed=0)
    pa, pb = (olden_importance(f.weights)[:, :, 0] for f in (a, b))
    p1 = permutation_pvalues(pa[0], pa[1:])
    p2 = permutation_pvalues(pb[0], pb[1:])
    assert np.array_equal(p1.two_sided, p2.two_sided)


def test_a_diverging_network_is_flagged_and_does_not_touch_the_others():
    X, y = _data()
    spec = MLPSpec((X.shape[1], 4, 1), ("sigmoid",))
    init = torch_default_init(spec, 0).broadcast(3)
    init.W[0] = init.W[0].copy()
    init.W[0][1, 0, 0] = np.nan
    recipe = Recipe(epochs=1, batch_size=60)
    fit = train_batched(X, PermutedTargets(y, np.array([-1, 1, 2])), spec, recipe, init, schedule_seed=0)
    assert fit.diverged.tolist() == [False, True, False]
    ref = train_looped(X, PermutedTargets(y, np.array([-1, 1, 2])), spec, recipe,
                       init.take([0]), schedule_seed=0, networks=[0])
    assert np.abs(fit.weights.W[0][0] - ref.weights.W[0][0]).max() < 2e-5


def test_recipe_names_missing_and_malformed_keys():
    with pytest.raises(InvalidConfigError, match="'lr', 'epochs'"):
        Recipe.from_mapping({"optimizer": "adam", "batch_size": 10}, source="training.json")
    with pytest.raises(InvalidConfigError, match="'epochs'"):
        Recipe.from_mapping({"optimizer": "adam", "lr": 0.1, "epochs": 2.5, "batch_size": 10}, source="x")
    with pytest.raises(InvalidConfigError, match="optimizer"):
        Recipe.from_mapping({"optimizer": "lbfgs", "lr": 0.1, "epochs": 2, "batch_size": 10}, source="x")
    with pytest.raises(InvalidConfigError, match="has no key 'epoch'. Did you mean 'epochs'?"):
        Recipe.from_mapping({"optimizer": "adam", "lr": 0.1, "epochs": 2, "epoch": 3, "batch_size": 10}, source="x")
    with pytest.raises(InvalidConfigError, match="selection"):
        Recipe.from_mapping({"optimizer": "adam", "lr": 0.1, "epochs": 2, "batch_size": 10,
                             "selection": "accuracy"}, source="x")
    r = Recipe.from_mapping({"optimizer": "adam", "lr": 0.1, "epochs": 2, "batch_size": 10}, source="x", loss="bce")
    assert "weight_decay" in r.defaulted and r.weight_decay == 0.0 and r.validation_fraction is None


def test_unsupported_activation_is_refused():
    with pytest.raises(InvalidConfigError, match="not supported"):
        MLPSpec((3, 2, 1), ("swish",))
