"""Explanation quality: perturbation curves, AOPC, confidence drop (Samek et al. 2017;
Amorim et al. 2020).

The evaluation takes any relevance array and any pure ``apply_fn(params, x) -> logits``; it
does not import the attribution engine. Inputs may be tabular rows ``(batch, features)``,
signals and sequences ``(batch, length, channels)``, NHWC images or any ``(batch, *axes,
channels)`` (see :mod:`jaxattr.evaluation.regions`).
"""
from jaxattr.evaluation.aopc import (
    DEFAULT_FRACTIONS,
    SCORES,
    aopc,
    confidence_drop,
    perturbation_curve,
    perturbed_inputs,
    scores_at_counts,
)
from jaxattr.evaluation import checks
from jaxattr.evaluation.checks import conservation, summation_to_delta
from jaxattr.evaluation.evaluate import drop_column, evaluate
from jaxattr.evaluation.perturbation import PERTURBATIONS, Blur, ChannelMean, Constant, Mean, Uniform, Zeros
from jaxattr.evaluation.regions import ORDERS, RepeatedStepsWarning, n_regions, step_counts

__all__ = [
    "DEFAULT_FRACTIONS",
    "ORDERS",
    "PERTURBATIONS",
    "RepeatedStepsWarning",
    "SCORES",
    "Blur",
    "ChannelMean",
    "Constant",
    "Mean",
    "Uniform",
    "Zeros",
    "aopc",
    "checks",
    "conservation",
    "summation_to_delta",
    "confidence_drop",
    "drop_column",
    "evaluate",
    "n_regions",
    "perturbation_curve",
    "perturbed_inputs",
    "scores_at_counts",
    "step_counts",
]
