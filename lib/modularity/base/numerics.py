"""How closely two computations of the same number can agree, and checks held to that.

Two correct float computations of one quantity differ when they sum in another order: on another
CPU's kernels (torch picks them by ``ATEN_CPU_CAPABILITY``: ``default``, ``avx2``, ``avx512``),
with another batch shape or padding, or through nnsight traces instead of hooks. The difference
scales with the magnitude of the numbers the quantity is *computed from*, not with the quantity
itself: an exact-patching effect of 3e-4 nats is the difference of two log-probs of ~30 nats, so it
carries their rounding (~1e-6 nats) however small the effect is. A tolerance relative to the effect
(``rtol`` on a near-zero difference) holds only where the kernels happen to round alike.

So every agreement check in the tests and the book's pages states its tolerance as

    tolerance = ULPS_PER_LAYER[dtype] · (n_layers + 1) · eps(dtype) · scale

where ``scale`` is the largest magnitude among the values the quantity is computed from (the
log-probs for log-probs and their differences; the largest score for attribution scores; the
largest activation for activations) and the layer count reflects that each layer's matmuls add
their own rounding to the residual stream on the way forward, and again on the way back for
gradients. The float32 constant is calibrated on the largest difference measured: attribution
scores of SmolLM2-135M (30 layers) through hooks and through nnsight differ by 330 float32 units of
the largest score (11 per layer) under each of ``default``, ``avx2`` and ``avx512``, forward
log-probs by 3 (0.1 per layer); 32 per layer leaves a margin of 3 over the worst of them. Half
precision rounds every stored activation to 8 (bfloat16) or 11 (float16) bits, so there a
difference of a couple of units per layer is already the resolution of the format; that constant
is a bound from the format, not a measurement (no stage page has been executed in half precision).

Pure functions of numbers and arrays; no model, no I/O.
"""
from __future__ import annotations

import numpy as np

#: Machine epsilon (the spacing of floats at 1.0) of each dtype the stages run in.
EPS: dict[str, float] = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}

#: Rounding units per layer two orderings of one computation may differ by (see the module text).
ULPS_PER_LAYER: dict[str, float] = {"float64": 32.0, "float32": 32.0, "bfloat16": 2.0, "float16": 2.0}


def dtype_name(dtype) -> str:
    """``"float32"`` for ``torch.float32``, ``np.float32`` or ``"float32"``."""
    name = str(dtype).replace("torch.", "")
    if name not in EPS:
        name = np.dtype(dtype).name
    if name not in EPS:
        raise ValueError(f"no rounding model for dtype {dtype!r}; known: {sorted(EPS)}")
    return name


def tolerance(scale: float, n_layers: int, dtype="float32") -> float:
    """Largest difference two correct computations of a quantity may show (see the module text).

    ``scale``: the largest |value| among the numbers the quantity is computed from;
    ``n_layers``: transformer layers the computation runs through; ``dtype``: the model's.
    """
    name = dtype_name(dtype)
    return float(ULPS_PER_LAYER[name] * (n_layers + 1) * EPS[name] * abs(float(scale)))


def largest_magnitude(*arrays) -> float:
    """max |x| over the finite values of all ``arrays`` (0.0 when there are none)."""
    values = [np.abs(np.asarray(_as_numpy(a), dtype=float)).ravel() for a in arrays]
    values = np.concatenate(values) if values else np.empty(0)
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 0.0


def agreement(actual, expected, held_to: float) -> dict:
    """``{largest difference, held to, agrees}`` of two arrays of the same shape.

    NaN must sit at the same places in both (a NaN where the other has a number disagrees).
    """
    actual, expected = np.asarray(_as_numpy(actual), dtype=float), np.asarray(_as_numpy(expected), dtype=float)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    same_nan = np.array_equal(np.isnan(actual), np.isnan(expected))
    both = ~np.isnan(actual) & ~np.isnan(expected)
    largest = float(np.abs(actual[both] - expected[both]).max()) if both.any() else 0.0
    return {"largest difference": largest, "held to": float(held_to), "agrees": bool(same_nan and largest <= held_to)}


def assert_agree(actual, expected, held_to: float, what: str = "values") -> dict:
    """:func:`agreement`, raising ``AssertionError`` (one line: what, difference, tolerance) beyond it."""
    result = agreement(actual, expected, held_to)
    if not result["agrees"]:
        raise AssertionError(f"{what}: largest difference {result['largest difference']:.3g} exceeds the "
                             f"tolerance {held_to:.3g} (or NaN at different places)")
    return result


def _as_numpy(value):
    detach = getattr(value, "detach", None)
    return detach().cpu().double().numpy() if detach else value
