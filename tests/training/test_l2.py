import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxattr.training.groups import GROUPS, group_mask, in_group, layer_labels
from jaxattr.training.l2 import (
    adam_l2,
    coupled_l2,
    grouped_adam_l2,
    grouped_l2_penalty,
    l2_penalty,
)

LR = 1e-2


def loss(params):
    """Any smooth non-quadratic loss of every leaf."""
    return sum(jnp.sum(jnp.sin(w) + 0.1 * w**3) for w in jax.tree_util.tree_leaves(params))


def naive_penalty(params, decay, group):
    """λ Σ w² over the kernels of ``group``, written from the paper's definition."""
    total = 0.0
    for name, layer in params.items():
        if "kernel" in layer and (
            group == "A"
            or (group in ("B", "D") and name.startswith({"B": "block", "D": "dense"}[group]))
            or name.startswith(f"block{group[1:]}_" if group[0] == "B" else f"dense{group[1:]}")
        ):
            total += decay * jnp.sum(layer["kernel"] ** 2)
    return total


def run(tx, grad_fn, params, steps=3):
    """A few optimiser steps, eagerly: op-by-op compilations are cached across
    tests, where a jitted step would compile once per transformation."""
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


def assert_trees_close(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


@pytest.mark.parametrize("group", ["B1", "D2", "B", "A"])
def test_coupled_equals_differentiating_the_penalised_loss(w, group):
    decay = 0.05
    mask = group_mask(w, group)
    ours = run(adam_l2(LR, decay, mask), jax.grad(loss), w)
    penalised = jax.grad(lambda p: loss(p) + naive_penalty(p, decay, group))
    reference = run(optax.adam(LR), penalised, w)
    assert_trees_close(ours, reference, rtol=1e-5, atol=1e-6)
    # and the penalty mattered: exactly the selected kernels moved differently
    plain = run(optax.adam(LR), jax.grad(loss), w)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), ours, plain)
    assert moved == mask


def test_coupled_l2_adds_twice_decay_times_weights_on_the_mask(w):
    mask = group_mask(w, "D")
    grads = jax.tree.map(jnp.ones_like, w)
    updates, _ = coupled_l2(0.1, mask).update(grads, coupled_l2(0.1, mask).init(w), w)
    np.testing.assert_allclose(updates["dense1"]["kernel"], 1 + 0.2 * w["dense1"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(updates["dense1"]["bias"], 1.0)
    np.testing.assert_array_equal(updates["block1_conv1"]["kernel"], 1.0)


@pytest.mark.parametrize("coupled", [True, False])
def test_zero_decay_changes_nothing(w, coupled):
    plain = run(optax.adam(LR), jax.grad(loss), w)
    zero_decay = adam_l2(LR, 0.0, group_mask(w, "A"), coupled=coupled)
    assert_trees_close(run(zero_decay, jax.grad(loss), w), plain, rtol=0, atol=0)
    zeros = {label: jnp.float32(0.0) for label in ["B1", "B2", "B3", "D1", "D2"]}
    grouped = grouped_adam_l2(LR, zeros, layer_labels(w), coupled=coupled)
    assert_trees_close(run(grouped, jax.grad(loss), w), plain, rtol=0, atol=0)


def test_decoupled_is_adamw_on_the_mask(w):
    mask = group_mask(w, "B2")
    ours = run(adam_l2(LR, 0.05, mask, coupled=False), jax.grad(loss), w)
    reference = run(optax.adamw(LR, weight_decay=0.05, mask=mask), jax.grad(loss), w)
    assert_trees_close(ours, reference, rtol=1e-6, atol=1e-7)


def group_decays(w, decay, group):
    labels = sorted(set(jax.tree_util.tree_leaves(layer_labels(w))) - {"none"})
    return {l: jnp.float32(decay if in_group(l, group) else 0.0) for l in labels}


@pytest.mark.parametrize("coupled", [True, False])
@pytest.mark.parametrize("group", GROUPS)
def test_grouped_decays_equal_the_masked_optimiser(w, group, coupled):
    """A config's per-label decays (group mask as 0/1 times λ) give adam_l2."""
    grouped = grouped_adam_l2(LR, group_decays(w, 0.03, group), layer_labels(w), coupled=coupled)
    masked = adam_l2(LR, 0.03, group_mask(w, group), coupled=coupled)
    assert_trees_close(
        run(grouped, jax.grad(loss), w, 2), run(masked, jax.grad(loss), w, 2),
        rtol=1e-6, atol=1e-7,
    )


def test_grouped_decays_can_be_traced_and_vmapped(w):
    labels = layer_labels(w)
    configs = [("B1", 0.1), ("D", 0.02)]
    stacked = jax.tree.map(lambda *d: jnp.stack(d), *[group_decays(w, d, g) for g, d in configs])

    def one_step(decays):
        tx = grouped_adam_l2(LR, decays, labels)
        updates, _ = tx.update(jax.grad(loss)(w), tx.init(w), w)
        return updates

    batched = jax.jit(jax.vmap(one_step))(stacked)
    for i, (group, decay) in enumerate(configs):
        tx = adam_l2(LR, decay, group_mask(w, group))
        expected, _ = tx.update(jax.grad(loss)(w), tx.init(w), w)
        assert_trees_close(jax.tree.map(lambda a: a[i], batched), expected, rtol=1e-6, atol=1e-7)


def test_penalties(w):
    mask = group_mask(w, "D")
    expected = 0.5 * (jnp.sum(w["dense1"]["kernel"] ** 2) + jnp.sum(w["dense2"]["kernel"] ** 2))
    np.testing.assert_allclose(l2_penalty(w, 0.5, mask), expected, rtol=1e-6)
    grouped = grouped_l2_penalty(w, group_decays(w, 0.5, "D"), layer_labels(w))
    np.testing.assert_allclose(grouped, expected, rtol=1e-6)
    np.testing.assert_allclose(naive_penalty(w, 0.5, "D"), expected, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda d: coupled_l2(d),
    lambda d: adam_l2(1e-3, d),
    lambda d: adam_l2(1e-3, d, coupled=False),
    lambda d: grouped_adam_l2(1e-3, {"B1": d}, {"k": "B1"}),
    lambda d: l2_penalty({"k": jnp.ones(2)}, d),
])
def test_negative_or_non_finite_decay_is_rejected(make):
    with pytest.raises(ValueError, match=r"decay.* must be a finite number >= 0, got -0\.1"):
        make(-0.1)
    with pytest.raises(ValueError, match="got inf"):
        make(float("inf"))
    with pytest.raises(TypeError, match="decay.* must be a real number >= 0, got 'big'"):
        make("big")


def test_learning_rate_must_be_positive():
    with pytest.raises(ValueError, match="learning_rate must be a positive number, got 0"):
        adam_l2(0)
