"""The published numbers of Amorim et al., as data.

J. P. Amorim, P. H. Abreu, M. Reyes, J. Santos, "Interpretability vs. Complexity: The Friction in
Deep Neural Networks", IJCNN 2020. CIFAR-10, 10-fold cross-validation, iNNvestigate 1.0.8; every
value is the mean AOPC over the 10 folds.

- Table II: methods x L2 weight decay, all layers regularised (group ``A``).
- Tables III-VII: one per method, layer group regularised x weight decay.

The numbers were read from the paper's text (``shared/seeds/000_45fe929ccc1a5318.txt``). Quirks of
that text, and how they are resolved here:

- The header rows of Tables II and VI read ``0 0 0.0001 0.001 0.005 0.01 0.05`` (a duplicated ``0``
  from the text extraction); every data row has six values, so the decays are the six of the
  paper's protocol: 0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2.
- Tables III-VII print the rows in the order B1 B2 B3 B D1 D2 D A, with ``B3`` and ``B`` spelt
  with a Cyrillic ``В``. The rows are keyed here by the Latin group names and returned in the
  order of :data:`PAPER_GROUPS` (B1 B2 B3 D1 D2 B D A, the order of the project's design).
- Table II prints ``9.3E-12`` for every method at decay 0.05 (the models collapse to a constant
  output), while row ``A`` of Tables III-VII prints ``0.0000`` for the same configuration. Both are
  kept exactly as printed (``9.3e-12`` and ``0.0``).
- Decay 0 is a single configuration shared by all groups (no layer is regularised), so every row
  of Tables III-VII repeats the same decay-0 value; it also equals Table II's decay-0 value.
- Table II rounds row ``A`` of Tables III-VII to three decimals (checked by the tests).
- The bold marks (best value per method in Table II, best group per decay in III-VII) are lost in
  the text; they are recomputed from the values when needed.
"""
from __future__ import annotations

import math

import pandas as pd

__all__ = [
    "PAPER_DECAYS",
    "PAPER_GROUPS",
    "PAPER_METHODS",
    "PAPER_METHOD_LABELS",
    "PAPER_TABLE_NUMBERS",
    "PAPER_TABLE_II",
    "paper_table",
    "paper_table_ii",
    "paper_value",
]

#: The L2 weight decays of the paper, in the column order of its tables.
PAPER_DECAYS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 5e-3, 1e-2, 5e-2)

#: Layer groups: conv blocks B1-B3, dense layers D1-D2, all conv B, all dense D, all layers A.
PAPER_GROUPS: tuple[str, ...] = ("B1", "B2", "B3", "D1", "D2", "B", "D", "A")

#: Method keys, in the order of the paper's Table II.
PAPER_METHODS: tuple[str, ...] = ("deconvnet", "deep_taylor", "gradient", "guided_backprop", "lrp")

#: How the paper names each method.
PAPER_METHOD_LABELS: dict[str, str] = {
    "deconvnet": "DeConvNet",
    "deep_taylor": "Deep Taylor",
    "gradient": "Gradient",
    "guided_backprop": "Guided Backprop",
    "lrp": "LRP",
}

#: The per-group table of each method.
PAPER_TABLE_NUMBERS: dict[str, str] = {
    "deconvnet": "III",
    "deep_taylor": "IV",
    "gradient": "V",
    "guided_backprop": "VI",
    "lrp": "VII",
}

# Table II: mean AOPC, all layers regularised; one row per method, columns = PAPER_DECAYS.
_TABLE_II: dict[str, tuple[float, ...]] = {
    "deconvnet": (0.314, 0.293, 0.253, 0.232, 0.134, 9.3e-12),
    "deep_taylor": (0.218, 0.230, 0.229, 0.201, 0.114, 9.3e-12),
    "gradient": (0.419, 0.413, 0.417, 0.356, 0.226, 9.3e-12),
    "guided_backprop": (0.269, 0.281, 0.263, 0.224, 0.132, 9.3e-12),
    "lrp": (0.423, 0.421, 0.427, 0.362, 0.231, 9.3e-12),
}

# Tables III-VII: per method, one row per group (Latin names), columns = PAPER_DECAYS. Rows are
# written in the paper's printed order (B1 B2 B3 B D1 D2 D A) to ease proof-reading.
_GROUP_TABLES: dict[str, dict[str, tuple[float, ...]]] = {
    "deconvnet": {  # Table III
        "B1": (0.3142, 0.3082, 0.3004, 0.2810, 0.2772, 0.2292),
        "B2": (0.3142, 0.3368, 0.3065, 0.2882, 0.2651, 0.2328),
        "B3": (0.3142, 0.3107, 0.3135, 0.3037, 0.2710, 0.3228),
        "B": (0.3142, 0.2878, 0.2651, 0.2451, 0.2603, 0.1600),
        "D1": (0.3142, 0.3253, 0.3265, 0.3298, 0.3425, 0.3666),
        "D2": (0.3142, 0.3247, 0.3238, 0.3197, 0.3249, 0.3155),
        "D": (0.3142, 0.3262, 0.3344, 0.3298, 0.3395, 0.3503),
        "A": (0.3142, 0.2934, 0.2526, 0.2316, 0.1343, 0.0000),
    },
    "deep_taylor": {  # Table IV
        "B1": (0.2183, 0.2216, 0.2252, 0.2274, 0.2211, 0.2188),
        "B2": (0.2183, 0.2283, 0.2232, 0.2226, 0.2224, 0.1988),
        "B3": (0.2183, 0.2368, 0.2310, 0.2323, 0.2245, 0.2416),
        "B": (0.2183, 0.2269, 0.2312, 0.2326, 0.2236, 0.1453),
        "D1": (0.2183, 0.2279, 0.2465, 0.2427, 0.2499, 0.2526),
        "D2": (0.2183, 0.2267, 0.2302, 0.2405, 0.2235, 0.2354),
        "D": (0.2183, 0.2250, 0.2348, 0.2452, 0.2473, 0.2516),
        "A": (0.2183, 0.2301, 0.2292, 0.2014, 0.1138, 0.0000),
    },
    "gradient": {  # Table V
        "B1": (0.4192, 0.4212, 0.4249, 0.4167, 0.4145, 0.4153),
        "B2": (0.4192, 0.4242, 0.4244, 0.4101, 0.4153, 0.3898),
        "B3": (0.4192, 0.4301, 0.4252, 0.4295, 0.4230, 0.4279),
        "B": (0.4192, 0.4279, 0.4272, 0.4149, 0.3963, 0.2309),
        "D1": (0.4192, 0.4227, 0.4252, 0.4287, 0.4226, 0.4358),
        "D2": (0.4192, 0.4181, 0.4291, 0.4303, 0.4273, 0.4341),
        "D": (0.4192, 0.4211, 0.4248, 0.4289, 0.4266, 0.4201),
        "A": (0.4192, 0.4127, 0.4174, 0.3564, 0.2260, 0.0000),
    },
    "guided_backprop": {  # Table VI
        "B1": (0.2690, 0.2722, 0.2720, 0.2698, 0.2563, 0.2454),
        "B2": (0.2690, 0.2884, 0.2696, 0.2700, 0.2561, 0.2312),
        "B3": (0.2690, 0.2860, 0.2844, 0.2825, 0.2615, 0.2881),
        "B": (0.2690, 0.2777, 0.2723, 0.2611, 0.2678, 0.1629),
        "D1": (0.2690, 0.2867, 0.2852, 0.2912, 0.2903, 0.2993),
        "D2": (0.2690, 0.2792, 0.2716, 0.2922, 0.2878, 0.2755),
        "D": (0.2690, 0.2788, 0.2919, 0.2867, 0.2951, 0.3022),
        "A": (0.2690, 0.2813, 0.2630, 0.2243, 0.1324, 0.0000),
    },
    "lrp": {  # Table VII
        "B1": (0.4226, 0.4274, 0.4304, 0.4202, 0.4203, 0.4196),
        "B2": (0.4226, 0.4295, 0.4289, 0.4154, 0.4184, 0.3947),
        "B3": (0.4226, 0.4340, 0.4284, 0.4344, 0.4256, 0.4302),
        "B": (0.4226, 0.4309, 0.4312, 0.4206, 0.4055, 0.2336),
        "D1": (0.4226, 0.4282, 0.4278, 0.4351, 0.4288, 0.4439),
        "D2": (0.4226, 0.4227, 0.4333, 0.4337, 0.4351, 0.4387),
        "D": (0.4226, 0.4273, 0.4301, 0.4334, 0.4317, 0.4281),
        "A": (0.4226, 0.4211, 0.4265, 0.3622, 0.2313, 0.0000),
    },
}


def _frame(rows: dict[str, tuple[float, ...]], order: tuple[str, ...], index_name: str) -> pd.DataFrame:
    """A float table with ``order`` as its index and :data:`PAPER_DECAYS` as its columns."""
    frame = pd.DataFrame([rows[key] for key in order], index=pd.Index(order, name=index_name),
                         columns=pd.Index(PAPER_DECAYS, name="decay"), dtype=float)
    return frame


def _check_method(method: str) -> str:
    if method not in _GROUP_TABLES:
        raise KeyError(f"method must be one of {PAPER_METHODS} (the methods of Amorim et al.); got {method!r}")
    return method


def paper_table_ii() -> pd.DataFrame:
    """Amorim et al., Table II: mean AOPC over 10 folds, all layers regularised.

    Returns a new DataFrame (index ``method`` = :data:`PAPER_METHODS`, columns ``decay`` =
    :data:`PAPER_DECAYS`).

    >>> paper_table_ii().loc["lrp", 1e-3]
    np.float64(0.427)
    """
    return _frame(_TABLE_II, PAPER_METHODS, "method")


def paper_table(method: str) -> pd.DataFrame:
    """Amorim et al., Tables III-VII: mean AOPC of ``method`` per layer group regularised.

    Returns a new DataFrame (index ``group`` = :data:`PAPER_GROUPS`, columns ``decay`` =
    :data:`PAPER_DECAYS`). ``method`` is one of :data:`PAPER_METHODS`.

    >>> paper_table("gradient").loc["D1", 5e-2]
    np.float64(0.4358)
    """
    return _frame(_GROUP_TABLES[_check_method(method)], PAPER_GROUPS, "group")


def paper_value(method: str, group: str, decay: float) -> float:
    """The paper's mean AOPC for one cell, or NaN where the paper has no such configuration.

    ``group`` ``"none"`` (the unregularised decay-0 model) and any group at decay 0 give the
    shared decay-0 value. Unknown methods, groups or decays give NaN rather than an error, so a
    report can place the paper beside any study grid.
    """
    if method not in _GROUP_TABLES:
        return math.nan
    decays = [d for d in PAPER_DECAYS if math.isclose(d, float(decay), rel_tol=1e-9, abs_tol=0.0)]
    if not decays:
        return math.nan
    column = PAPER_DECAYS.index(decays[0])
    if column == 0:
        group = "A"  # decay 0 is one model, shared by every group
    rows = _GROUP_TABLES[method]
    return float(rows[group][column]) if group in rows else math.nan


#: Table II as a DataFrame (see :func:`paper_table_ii`; prefer the function to get a fresh copy).
PAPER_TABLE_II: pd.DataFrame = paper_table_ii()
