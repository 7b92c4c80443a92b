"""ood_core.bank (bounded, evenly spread rows) and ood_core.head (linear head checks)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ood_core.bank import BoundedRows, l2_normalize
from ood_core.head import linear_from_weights, linear_weights, refuse_encoder


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    limit=st.integers(1, 50),
)
def test_kept_rows_do_not_depend_on_batching(sizes, limit):
    rows = torch.arange(sum(sizes), dtype=torch.float64)[:, None]
    streamed, whole = BoundedRows(limit), BoundedRows(limit)
    start = 0
    for size in sizes:
        streamed.add(rows[start : start + size])
        start += size
    whole.add(rows)
    if not len(rows):
        return
    kept = streamed.rows()
    assert torch.equal(kept, whole.rows())
    assert len(kept) == min(limit, len(rows)) and bool((kept[1:] > kept[:-1]).all())


def test_kept_rows_spread_over_the_stream_and_warn():
    bank = BoundedRows(100)
    bank.add(torch.arange(10_000.0)[:, None])
    counts = torch.bincount((bank.rows()[:, 0] // 1000).long(), minlength=10)
    assert int(counts.min()) >= 9 and int(counts.max()) <= 11
    with pytest.warns(UserWarning, match="10000 samples exceed max_bank=100"):
        bank.warn_if_reduced("KNN", "max_bank")


def test_l2_normalize_keeps_a_zero_row_zero():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_linear_weights_and_errors():
    layer = torch.nn.Linear(3, 2, bias=False)
    w, b = linear_weights("X", layer)
    assert w.shape == (2, 3) and b.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="X: argument 'head' must be an nn.Linear"):
        linear_weights("X", torch.nn.ReLU())
    rebuilt = linear_from_weights("X", torch.ones(2, 3), torch.zeros(2))
    assert rebuilt(torch.ones(1, 3)).tolist() == [[3.0, 3.0]]
    with pytest.raises(ValueError, match="X: argument 'b' must be a float tensor \\(2,\\)"):
        linear_from_weights("X", torch.ones(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="X: argument 'encoder' must be None"):
        refuse_encoder("X", torch.nn.Identity())
