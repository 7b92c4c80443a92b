"""ood_core.shaping: the quantile, the top-k count, pooling and fail-closed rows of shaping scorers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ood_core.bank import BoundedRows
from ood_core.shaping import (
    bounded_quantile,
    check_fraction,
    fail_closed_rows,
    global_pool,
    head_width,
    kept_count,
    quantile,
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    st.floats(0, 1),
)
def test_quantile_is_numpys_linear_percentile(values, q):
    got = float(quantile(torch.tensor(values, dtype=torch.float64), q))
    assert got == pytest.approx(float(np.percentile(values, q * 100)), rel=1e-9, abs=1e-6)


def test_bounded_quantile_is_exact_below_the_limit_and_warns_above():
    x = torch.randn(1000, dtype=torch.float64)
    rows = BoundedRows(1000)
    for part in x.split(70):
        rows.add(part[:, None])
    assert float(bounded_quantile("T", rows, 0.9, "limit")) == float(x.quantile(0.9))
    small = BoundedRows(200)
    small.add(x[:, None])
    with pytest.warns(UserWarning, match="1000 samples exceed limit=200"):
        q = bounded_quantile("T", small, 0.9, "limit")
    assert abs(float((x <= q).double().mean()) - 0.9) < 0.05
    with pytest.raises(ValueError, match="T.fit: argument 'x' holds no ID samples"):
        bounded_quantile("T", BoundedRows(5), 0.5, "limit")


@pytest.mark.parametrize(
    "n, fraction, k", [(10, 0.65, 4), (5, 0.5, 3), (7, 0.5, 3), (16, 0.0, 16), (3, 0.9, 0)]
)
def test_kept_count_rounds_half_to_even_and_refuses_nothing_kept(n, fraction, k):
    if k == 0:
        with pytest.raises(ValueError, match="T: argument 'p' must be a fraction that keeps"):
            kept_count("T", "p", n, fraction)
    else:
        assert kept_count("T", "p", n, fraction) == k == n - int(np.round(n * fraction))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_check_fraction_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"T: argument 'p' must be a fraction in \[0, 1\]"):
        check_fraction("T", "p", bad)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_fraction("T", "p", 1.0, below_one=True)


def test_pool_head_width_and_fail_closed_rows():
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    torch.testing.assert_close(global_pool(x), x.mean(dim=(2, 3)))
    assert global_pool(x[:, :, 0, 0]) is not None and global_pool(x[:, :, 0, 0]).shape == (2, 3)
    assert head_width(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(7, 2))) == 7
    assert head_width(torch.nn.Identity()) is None
    x[1, 0, 0, 0] = math.inf  # clipped, it would score as a normal sample
    got = fail_closed_rows(torch.tensor([1.0, -2.0]), x)
    assert got[0] == 1.0 and got[1] == math.inf
    assert fail_closed_rows(torch.tensor([math.nan]), x[:1])[0] == math.inf
