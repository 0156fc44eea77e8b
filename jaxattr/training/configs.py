"""The regularisation configurations of Amorim et al. (2020).

The paper trains with L2 decays {0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2} on each layer
group B1 B2 B3 D1 D2 B D A (§III-A). Decay 0 is the same model whatever the group,
so it is one configuration: 1 + 5 × 8 = 41.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from jaxattr.training.groups import GROUPS, check_group
from jaxattr.training.l2 import check_decay

__all__ = ["PAPER_DECAYS", "Config", "paper_configs"]

PAPER_DECAYS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2)
"""The paper's L2 decays λ (Keras ``l2(λ)``: loss + λ Σ w²)."""


class Config(NamedTuple):
    """One training configuration: L2 decay ``decay`` on the kernels of ``group``."""

    decay: float
    group: str = "A"

    def validate(self) -> Config:
        """Return ``self`` if ``decay`` ≥ 0 and ``group`` is known, else raise."""
        check_decay(self.decay, "Config.decay")
        check_group(self.group)
        return self

    def canonical(self) -> Config:
        """``Config(0.0, "A")`` for any zero decay (the group does not matter)."""
        return Config(0.0, "A") if self.decay == 0 else self


def paper_configs(
    decays: Iterable[float] = PAPER_DECAYS, groups: Iterable[str] = GROUPS
) -> list[Config]:
    """Every (decay, group) pair, decay-major, with decay 0 once as ``Config(0.0, "A")``.

    Examples:
      >>> len(paper_configs())
      41
      >>> paper_configs([0.0, 1e-3], ["B1", "D"])
      [Config(decay=0.0, group='A'), Config(decay=0.001, group='B1'), Config(decay=0.001, group='D')]
    """
    groups = [check_group(g) for g in groups]
    configs: list[Config] = []
    for decay in decays:
        for group in groups:
            config = Config(float(check_decay(decay)), group).canonical()
            if config not in configs:
                configs.append(config)
    if not configs:
        raise ValueError("paper_configs needs at least one decay and one group")
    return configs
