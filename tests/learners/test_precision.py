"""Training precision: what "auto" means on a CPU, and what autocast changes."""

from __future__ import annotations

import pytest
import torch

from learners import precision


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_uses_bf16_only_where_the_cpu_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    assert precision.resolve("auto") == expected
    assert precision.resolve("fp32") == "fp32"
    assert precision.resolve("bf16") == "bf16"


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="fp16"):
        precision.resolve("fp16")


@pytest.mark.parametrize(("name", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_autocast_sets_the_dtype_of_matrix_products(name, dtype):
    layer = torch.nn.Linear(8, 4)
    with precision.autocast(name):
        out = layer(torch.randn(3, 8))
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32
