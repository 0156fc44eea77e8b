"""Small models and a plain-numpy reference for the evaluation tests.

The reference loops over images and steps and builds every perturbed image by hand, so it
shares no code with ``jaxattr.evaluation`` beyond calling the model.
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def linear_apply(params, x):
    """logits = flatten(x) @ W + b: the target logit is exactly Σ x ⊙ W[..., t] + b[t]."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


class TinyCNN(nn.Module):
    classes: int = 5

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2), padding="SAME")
        return nn.Dense(self.classes)(x.reshape(x.shape[0], -1))


TINY_CNN = TinyCNN()
cnn_apply = TINY_CNN.apply  # one object, so jit caches hit across tests


def normal(seed, shape):
    """Test data from numpy (jax.random would compile a threefry program per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def uniform(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


def linear_params(seed, shape, classes=4):
    return {"w": normal(seed, (math.prod(shape), classes)), "b": normal(seed + 1, (classes,))}


def integer_relevance(seed, shape, spread=4):
    """Small integers stored as floats: region sums are exact (no float-order flakiness in
    the ranking) and ties are frequent, so tie-breaking is exercised."""
    return jnp.asarray(np.random.default_rng(seed).integers(-spread, spread + 1, shape), jnp.float32)


def reference_curve(apply_fn, params, x, target, relevance, *, region, counts, order, perturbation, score):
    """Plain numpy: for each image and each count, perturb the top regions and score."""
    x, relevance = np.asarray(x), np.asarray(relevance)
    batch, height, width, _ = x.shape
    rows, cols = -(-height // region), -(-width // region)
    curve = np.zeros((batch, len(counts)))
    for i in range(batch):
        per_pixel = relevance[i].sum(axis=-1)
        scores = np.array(
            [per_pixel[a * region:(a + 1) * region, b * region:(b + 1) * region].sum()
             for a in range(rows) for b in range(cols)]
        )
        ranking = np.argsort(-scores if order == "morf" else scores, kind="stable")
        fill = {"zeros": 0.0, "mean": x[i].mean()}[perturbation]
        logits0 = np.asarray(apply_fn(params, x[i:i + 1]))[0]
        t = int(np.argmax(logits0)) if target is None else int(target[i])
        for k, count in enumerate(counts):
            image = x[i].copy()
            for r in ranking[:count]:
                a, b = divmod(int(r), cols)
                image[a * region:(a + 1) * region, b * region:(b + 1) * region, :] = fill
            logits = np.asarray(apply_fn(params, image[None]), np.float64)[0]
            if score == "probability":
                e = np.exp(logits - logits.max())
                curve[i, k] = e[t] / e.sum()
            elif score == "logit":
                curve[i, k] = logits[t]
            else:
                curve[i, k] = float(np.argmax(logits) == t)
    return curve


def reference_steps(n, steps):
    per = -(-n // steps)
    return [min(k * per, n) for k in range(steps + 1)]


@pytest.fixture
def images():
    """Six 9×7 RGB images in [0, 1] (9 and 7 are not multiples of the regions used)."""
    return uniform(0, (6, 9, 7, 3))


@pytest.fixture
def cnn_params(images):
    return TINY_CNN.init(jax.random.key(1), images[:1])


@pytest.fixture(scope="session")
def h():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(
        normal=normal, uniform=uniform, linear_apply=linear_apply, linear_params=linear_params, cnn_apply=cnn_apply, TINY_CNN=TINY_CNN,
        integer_relevance=integer_relevance, reference_curve=reference_curve, reference_steps=reference_steps,
    )
