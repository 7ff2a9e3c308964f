"""lowp: bf16 candidate tiles: threshold rounding, padding, precision choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsim_index.errors import InputError
from imgsim_index.search.tiles import (
    AUTO_BF16_FROM,
    above_bf16,
    bf16_floor,
    padded_rows,
    resolve_precision,
    to_bf16,
)


@pytest.mark.parametrize("value", [0.9899, 0.98828125, 0.5, 1e-3, 0.0, -0.3, -0.98765, 1.0])
def test_bf16_floor_is_the_largest_bf16_at_or_below(value: float) -> None:
    f = bf16_floor(value)
    t = torch.tensor([f], dtype=torch.bfloat16)
    assert float(t.item()) == f <= value  # representable, not above
    up = torch.nextafter(t, torch.tensor([float("inf")], dtype=torch.bfloat16))
    assert float(up.item()) > value  # the next bf16 is above


def test_padding_keeps_shapes_few_and_hits_real() -> None:
    assert [padded_rows(n) for n in (1, 32, 33, 256, 257, 4096, 4097)] == [
        32, 32, 64, 256, 512, 4096, 5120]
    assert len({padded_rows(n) for n in range(1, 4097)}) <= 24
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q, b = to_bf16(x[:5]), to_bf16(x[:7])
    assert q.shape == (32, 64) and b.shape == (32, 64)
    qi, cj = above_bf16(q, 5, b, 7, radius=-1.0)  # everything matches, padding does not
    assert sorted(zip(qi.tolist(), cj.tolist(), strict=True)) == [
        (i, j) for i in range(5) for j in range(7)]


def test_auto_precision_keeps_small_searches_in_fp32() -> None:
    assert resolve_precision("auto", AUTO_BF16_FROM - 1) == "fp32"
    assert resolve_precision("fp32", 10**9) == "fp32"
    assert resolve_precision("bf16", 2) == "bf16"
    assert resolve_precision("auto", AUTO_BF16_FROM) in ("bf16", "fp32")
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp16")


def test_the_environment_decides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMGSIM_PAIR_PRECISION forces what `auto` means: the float32 path can be measured on
    a CPU with bf16 GEMMs, and an explicit precision still wins."""
    from imgsim_index.search.tiles import PRECISION_ENV, resolve_precision

    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert resolve_precision("auto", 10**6) == "fp32"
    assert resolve_precision("bf16", 10**6) == "bf16"
    monkeypatch.setenv(PRECISION_ENV, "BF16")
    assert resolve_precision("auto", 10**6) == "bf16"
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(InputError, match="IMGSIM_PAIR_PRECISION must be fp32 or bf16"):
        resolve_precision("auto", 10**6)
