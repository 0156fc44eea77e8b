"""The CNN of Amorim et al., "Interpretability vs. Complexity: The Friction in Deep
Neural Networks" (IJCNN 2020), as a Flax Linen module.

The paper (§III-A, Fig. 1) describes "three convolutional blocks and two
fully-connected layers"; each block is two convolutions followed by a max pool, and
a softmax classifies. Filter counts, kernel sizes and the dense width are not given
in the paper: this module uses 3×3 SAME convolutions with 32, 64, 128 filters, ReLU,
2×2 stride-2 max pooling and a 512-unit dense layer (the usual Keras CIFAR-10 CNN).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxattr.models.pooling import max_pool_2x2

__all__ = ["PaperCNN", "small_paper_cnn"]


class PaperCNN(nn.Module):
    """Amorim et al.'s CNN: ``len(features)`` blocks of two 3×3 conv + ReLU and a
    2×2 max pool, then ``Dense(dense) + ReLU`` and ``Dense(num_classes)``.

    The output is logits: the paper's softmax belongs to the loss
    (softmax cross-entropy), and attribution methods explain logits.

    Submodules are named after the paper's layer groups so that the groups can be
    read from parameter paths (see :mod:`jaxattr.training.groups`):
    ``block{b}_conv{c}`` for convolution ``c`` (1, 2) of block ``b`` (1, 2, 3) and
    ``dense1``, ``dense2`` for the fully-connected layers.

    Input is NHWC, e.g. ``(B, 32, 32, 3)`` for CIFAR-10 or ``(B, 8, 8, 1)`` for
    scikit-learn's digits (three pools take 8×8 to 1×1).

    Attributes:
      num_classes: number of output logits.
      features: filters of the convolutions in each block.
      dense: width of the hidden fully-connected layer.
      conv_general_dilated: the convolution of every conv layer (Flax's
        ``nn.Conv`` argument); ``None`` is ``lax.conv_general_dilated``.
        :func:`jaxattr.models.conv.patches_conv` trains faster on CPU for small
        images and gives the same parameters and outputs.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = PaperCNN()
      >>> x = jnp.zeros((2, 32, 32, 3))
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> sorted(params)[:2], model.apply({"params": params}, x).shape
      (['block1_conv1', 'block1_conv2'], (2, 10))
    """

    num_classes: int = 10
    features: Sequence[int] = (32, 64, 128)
    dense: int = 512
    conv_general_dilated: Callable[..., jax.Array] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(
                f"PaperCNN: x must be NHWC with shape (batch, height, width, "
                f"channels), got shape {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"PaperCNN: x must have a floating dtype, got {x.dtype}"
            )
        for block, filters in enumerate(self.features, start=1):
            for conv in (1, 2):
                name = f"block{block}_conv{conv}"
                conv = nn.Conv(
                    filters, (3, 3), padding="SAME", name=name,
                    conv_general_dilated=self.conv_general_dilated,
                )
                x = nn.relu(conv(x))
            x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.dense, name="dense1")(x))
        return nn.Dense(self.num_classes, name="dense2")(x)


def small_paper_cnn(num_classes: int = 10, **kwargs) -> PaperCNN:
    """The paper's architecture with few filters (4, 8, 8) and 16 dense units.

    Same layers, names and layer groups as :class:`PaperCNN`, small enough for
    fast tests and quick experiments on CPU. ``kwargs`` go to :class:`PaperCNN`.
    """
    return PaperCNN(num_classes=num_classes, features=(4, 8, 8), dense=16, **kwargs)
