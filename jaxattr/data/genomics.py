"""The DeepLIFT paper's simulated genomics data (Shrikumar et al. 2016, §3.2).

    "The positive class requires that the DNA patterns 'GATA' and 'CAGATG' appear in the
    length-200 sequence together. The negative class has only one of the two patterns appearing
    once or twice. Outside the core patterns (which were sampled from a generative model) we
    randomly sample the four bases A, C, G and T."

:func:`simulate` follows that description (the 2016 paper's single task):

* background: i.i.d. bases, uniform by default ("randomly sample the four bases"); the 2017
  version of the paper (ICML, §4.2) used A, C, G, T frequencies 0.3, 0.2, 0.2, 0.3:
  ``background=PAPER_2017_BACKGROUND``.
* motif instances are *sampled* from position weight matrices (the generative model). The paper
  used ENCODE's ``GATA_disc1`` and ``TAL1_known1`` (Kheradpour & Kellis 2014), which are not
  shipped here; :data:`GATA_PWM` (core ``GATA``, consensus ``GAGATAAGA``) and :data:`TAL1_PWM`
  (core ``CAGATG``, an E-box, consensus ``TCCAGATGG``) below are small hand-written
  approximations, specific at the core and vague at the flanks. Sampling from them gives the
  exact core most of the time and a mutated one sometimes, as a PWM does.
* positives (``label 1``, probability ``positive_fraction``) hold one GATA and one TAL1
  instance; negatives hold one kind only, once or twice (kind and count uniform). Instances
  never overlap and start anywhere in the sequence.

Every sequence also carries the three labels of the 2017 paper's multi-task version
(``tasks``: has GATA, has TAL1, has both — with this sampling scheme "both" is ``label``), and
the true motif positions (``motif_mask``) for scoring attributions. Everything is
deterministic given ``seed`` (numpy ``default_rng``).

Layout: one-hot NWC, ``x`` float32 of shape ``(n, length, 4)``, channels A, C, G, T.

Example:
    >>> data = simulate(8, seed=0)
    >>> data.x.shape, data.labels.shape, data.motif_mask.shape
    ((8, 200, 4), (8,), (8, 200, 2))
    >>> bool((data.x.sum(-1) == 1).all())
    True
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["BASES", "GATA_PWM", "TAL1_PWM", "MOTIFS", "MOTIF_NAMES", "UNIFORM_BACKGROUND",
           "PAPER_2017_BACKGROUND", "GenomicsData", "simulate", "sample_motif", "one_hot",
           "decode", "consensus"]

BASES = "ACGT"
UNIFORM_BACKGROUND = (0.25, 0.25, 0.25, 0.25)
PAPER_2017_BACKGROUND = (0.3, 0.2, 0.2, 0.3)

# Rows: positions; columns: P(A), P(C), P(G), P(T). Approximations of ENCODE GATA_disc1 and
# TAL1_known1 (not the real matrices): strong cores, weak flanks.
GATA_PWM = np.array([
    [0.15, 0.15, 0.55, 0.15],  # G (weak)
    [0.45, 0.05, 0.05, 0.45],  # W
    [0.01, 0.01, 0.97, 0.01],  # G
    [0.97, 0.01, 0.01, 0.01],  # A
    [0.01, 0.01, 0.01, 0.97],  # T
    [0.97, 0.01, 0.01, 0.01],  # A
    [0.85, 0.03, 0.09, 0.03],  # A (R)
    [0.10, 0.10, 0.70, 0.10],  # G
    [0.60, 0.13, 0.14, 0.13],  # A (weak)
])
TAL1_PWM = np.array([
    [0.15, 0.15, 0.15, 0.55],  # T (weak)
    [0.10, 0.70, 0.10, 0.10],  # C
    [0.01, 0.97, 0.01, 0.01],  # C
    [0.97, 0.01, 0.01, 0.01],  # A
    [0.01, 0.01, 0.97, 0.01],  # G
    [0.90, 0.08, 0.01, 0.01],  # A (C in CAGCTG E-boxes)
    [0.01, 0.01, 0.01, 0.97],  # T
    [0.01, 0.01, 0.97, 0.01],  # G
    [0.10, 0.10, 0.70, 0.10],  # G
])
MOTIFS = (GATA_PWM, TAL1_PWM)
MOTIF_NAMES = ("GATA", "TAL1")


class GenomicsData(NamedTuple):
    """A simulated data set.

    Attributes:
        x: float32 ``(n, length, 4)`` one-hot sequences, channels A, C, G, T.
        labels: int32 ``(n,)``: 1 when both motif kinds are present (the paper's task).
        tasks: int32 ``(n, 3)``: has GATA, has TAL1, has both (2017's three tasks).
        motif_mask: bool ``(n, length, 2)``: position lies in an inserted GATA (0) / TAL1 (1)
            instance.
        instances: int32 ``(m, 3)`` rows ``(sequence, kind, start)`` of every inserted instance.
    """

    x: np.ndarray
    labels: np.ndarray
    tasks: np.ndarray
    motif_mask: np.ndarray
    instances: np.ndarray


def _check_probabilities(p, what):
    p = np.asarray(p, dtype=np.float64)
    if p.shape[-1] != 4 or (p < 0).any() or not np.allclose(p.sum(-1), 1.0, atol=1e-6):
        raise ValueError(f"{what} must be probabilities of A, C, G, T summing to 1, got {p.tolist()}")
    return p / p.sum(-1, keepdims=True)


def sample_motif(pwm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One instance (base indices 0..3) sampled position by position from ``pwm``."""
    pwm = _check_probabilities(pwm, "a PWM row")
    u = rng.random((pwm.shape[0], 1))
    return (u > np.cumsum(pwm, axis=1)).sum(axis=1).clip(0, 3)


def consensus(pwm: np.ndarray) -> str:
    """The most likely sequence of ``pwm``."""
    return "".join(BASES[i] for i in np.asarray(pwm).argmax(axis=1))


def one_hot(indices: np.ndarray) -> np.ndarray:
    """Base indices ``(..., length)`` to float32 one-hot ``(..., length, 4)``."""
    return np.eye(4, dtype=np.float32)[np.asarray(indices)]


def decode(x: np.ndarray) -> str:
    """A one-hot ``(length, 4)`` sequence as a string."""
    return "".join(BASES[i] for i in np.asarray(x).argmax(-1))


def _place(rng, length, widths, tries=1000):
    """Non-overlapping start positions for motifs of the given widths."""
    for _ in range(tries):
        starts = [int(rng.integers(0, length - w + 1)) for w in widths]
        spans = sorted(zip(starts, widths))
        if all(s1 + w1 <= s2 for (s1, w1), (s2, _) in zip(spans, spans[1:])):
            return starts
    raise RuntimeError(f"could not place motifs of widths {widths} in length {length}")


def simulate(n: int, *, length: int = 200, seed: int = 0,
             background: Sequence[float] = UNIFORM_BACKGROUND, positive_fraction: float = 0.5,
             motifs: Sequence[np.ndarray] = MOTIFS) -> GenomicsData:
    """Simulate ``n`` sequences of the paper's task (module docstring).

    Args:
        n: number of sequences.
        length: sequence length (200 in the paper).
        seed: seed of the numpy generator; same seed, same data.
        background: probabilities of A, C, G, T outside the motifs.
        positive_fraction: probability that a sequence holds both motif kinds.
        motifs: the two PWMs (rows: positions, columns: A, C, G, T), GATA-like then TAL1-like.

    Returns:
        :class:`GenomicsData`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if len(motifs) != 2:
        raise ValueError(f"motifs must be two PWMs (GATA-like, TAL1-like), got {len(motifs)}")
    motifs = [_check_probabilities(m, "a PWM row") for m in motifs]
    if length < 2 * max(m.shape[0] for m in motifs) + 2:
        raise ValueError(f"length {length} is too short for two motif instances")
    bg = _check_probabilities(background, "background")
    rng = np.random.default_rng(seed)
    seqs = rng.choice(4, size=(n, length), p=bg)
    labels = (rng.random(n) < positive_fraction).astype(np.int32)
    mask = np.zeros((n, length, 2), dtype=bool)
    instances = []
    for i in range(n):
        if labels[i]:
            kinds = [0, 1]
        else:
            kinds = [int(rng.integers(2))] * int(rng.integers(1, 3))
        widths = [motifs[k].shape[0] for k in kinds]
        for k, start in zip(kinds, _place(rng, length, widths)):
            inst = sample_motif(motifs[k], rng)
            seqs[i, start:start + len(inst)] = inst
            mask[i, start:start + len(inst), k] = True
            instances.append((i, k, start))
    has = mask.any(axis=1)
    tasks = np.stack([has[:, 0], has[:, 1], has[:, 0] & has[:, 1]], axis=1).astype(np.int32)
    return GenomicsData(one_hot(seqs), labels, tasks, mask,
                        np.asarray(instances, dtype=np.int32).reshape(-1, 3))
