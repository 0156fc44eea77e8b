"""The CNN of the DeepLIFT paper's genomics simulation (Shrikumar et al. 2016, §3.2), Flax Linen.

    "A CNN was trained using the Keras framework on one-hot encoded sequences with 20
    convolutional filters of length 15 and stride 1 and a max pool layer of width and stride 50,
    followed by two fully connected layers of size 200. PReLU nonlinearities were used for the
    hidden layers."

Choices the paper leaves open (Keras 1, the paper's framework, is the default guide):

* The convolution is VALID (Keras ``border_mode='valid'``): 200 − 15 + 1 = 186 positions.
* 186 is not a multiple of 50. Keras' ``MaxPooling1D`` (VALID) keeps 3 windows over conv
  positions 0–149 and drops 150–185, so the model never sees input positions ≥ 164: a motif
  instance there is invisible, to the model and to every attribution. Trained on
  :func:`jaxattr.data.genomics.simulate` (30 000 sequences, ``experiments/deeplift_genomics.py``)
  that model reached test auROC 0.794 against the paper's 0.907, which says the paper's model
  saw the whole sequence (the paper blames its errors on motifs arising by chance in the
  background, not on missed instances). The default here is therefore
  ``pool_padding="SAME"``: 4 windows, the last one over conv positions 150–185 (padded with
  −∞); it reached auROC 0.911 (0.902 and 0.906 with two other seeds).
  ``pool_padding="VALID"`` gives the Keras model.
* PReLU has one learnable slope per channel (shared over positions), initialised at 0 (Keras'
  ``PReLU`` initialiser; Keras' default is one slope per position *and* channel).
* The output is one logit per task (the paper trained sigmoid outputs; attribution explains
  the pre-sigmoid logit, paper §2.4). The sigmoid belongs to the loss.

Input: NWC one-hot DNA, ``(batch, length, 4)``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> model = GenomicsCNN()
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 200, 4)))
    >>> model.apply(params, jnp.zeros((2, 200, 4))).shape
    (2, 1)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["PReLU", "GenomicsCNN"]


class PReLU(nn.Module):
    """Parametric ReLU ``max(x, 0) + a · min(x, 0)`` with one slope ``a`` per channel (last axis)."""

    init_slope: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a = self.param("slope", nn.initializers.constant(self.init_slope), (x.shape[-1],), x.dtype)
        return jnp.where(x >= 0, x, a * x)


class GenomicsCNN(nn.Module):
    """Conv1D(filters, width) → PReLU → MaxPool(pool, pool) → Dense(hidden) → PReLU →
    Dense(hidden) → PReLU → Dense(n_tasks) logits.

    Attributes:
        n_tasks: number of output logits (1 for the paper's binary task).
        filters, width: convolution filters and their length (20, 15).
        pool: max-pool width and stride (50).
        hidden: width of the two dense layers (200).
        pool_padding: ``"SAME"`` (4 windows for length 200, every position seen; default) or
            ``"VALID"`` (3 windows, Keras' ``MaxPooling1D``; positions ≥ 164 unseen).

    Submodules: ``conv``, ``prelu_conv``, ``dense1``, ``prelu1``, ``dense2``, ``prelu2``, ``out``.
    """

    n_tasks: int = 1
    filters: int = 20
    width: int = 15
    pool: int = 50
    hidden: int = 200
    pool_padding: str = "SAME"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3 or x.shape[-1] != 4:
            raise ValueError(f"GenomicsCNN: x must be one-hot DNA of shape (batch, length, 4), got "
                             f"shape {x.shape}")
        if self.pool_padding not in ("VALID", "SAME"):
            raise ValueError(f"GenomicsCNN: pool_padding must be 'VALID' or 'SAME', got "
                             f"{self.pool_padding!r}")
        if x.shape[1] < self.width + self.pool - 1 and self.pool_padding == "VALID":
            raise ValueError(f"GenomicsCNN: sequences of length {x.shape[1]} are too short for a "
                             f"width-{self.width} conv and a VALID pool of {self.pool}")
        x = nn.Conv(self.filters, (self.width,), padding="VALID", name="conv")(x)
        x = PReLU(name="prelu_conv")(x)
        x = nn.max_pool(x, (self.pool,), strides=(self.pool,), padding=self.pool_padding)
        x = x.reshape(x.shape[0], -1)
        x = PReLU(name="prelu1")(nn.Dense(self.hidden, name="dense1")(x))
        x = PReLU(name="prelu2")(nn.Dense(self.hidden, name="dense2")(x))
        return nn.Dense(self.n_tasks, name="out")(x)
