"""Mixed-precision training on CPU: bfloat16 matrix products where the CPU multiplies them natively.

Why: a training step of the generative base model is bound by its matrix products (~60% of the
step's CPU time in ``aten::mm``, profiled on the BestBuy base), and CPUs with AVX512-BF16 or AMX
multiply bfloat16 far faster than float32. Under ``torch.autocast`` the products run in
bfloat16 while the weights, the optimiser state, T5's norms, the softmaxes and the loss stay
float32, so the saved model is the same float32 model that serving loads. On a CPU without
native bfloat16 the products are emulated and slower than float32, so ``"auto"`` keeps float32
there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "bf16", "fp32")


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX tiles); asked once,
    since every training step resolves its precision."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve(precision: str) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means on this machine."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


@contextlib.contextmanager
def autocast(precision: str) -> Iterator[None]:
    """Run the block's forward pass in ``precision``: under bfloat16 autocast, or as it is."""
    if resolve(precision) == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield
