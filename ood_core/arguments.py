"""Checks of constructor keywords (hyper-parameters), with errors naming the owner and argument.

Tensor inputs are checked by :mod:`ood_core.validation`; these check plain Python numbers once, at
construction, so a bad keyword fails early with ``ValueError`` instead of deep inside forward.
(``check_positive_int`` lives in :mod:`ood_core.nearest_center` for now.)
"""

from __future__ import annotations

import math

from ood_core.validation import fail


def check_real(owner: str, arg: str, value: object, *, minimum: float | None = None) -> float:
    """``value`` must be a finite real number (not a bool), ``>= minimum`` if given; as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(owner, arg, "a finite real number", repr(value))
    if minimum is not None and value < minimum:
        raise fail(owner, arg, f"a real number >= {minimum:g}", repr(value))
    return float(value)


def check_positive(owner: str, arg: str, value: object) -> float:
    """``value`` must be a finite real number ``> 0`` (a temperature, a scale); as float."""
    value = check_real(owner, arg, value)
    if not value > 0:
        raise fail(owner, arg, "a finite real number > 0", repr(value))
    return value
