"""The tolerance every float comparison is held to (modularity.base.numerics)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modularity.base import numerics


def test_tolerance_scales_with_what_a_number_is_computed_from():
    eps = torch.finfo(torch.float32).eps
    assert numerics.EPS["float32"] == eps and numerics.EPS["float64"] == torch.finfo(torch.float64).eps
    assert numerics.EPS["bfloat16"] == torch.finfo(torch.bfloat16).eps and numerics.EPS["float16"] == torch.finfo(torch.float16).eps
    assert numerics.tolerance(10.0, 2, torch.float32) == pytest.approx(32 * 3 * eps * 10.0)
    assert numerics.tolerance(10.0, 2, "float64") < 1e-12
    assert numerics.tolerance(-10.0, 0, np.float32) == numerics.tolerance(10.0, 0, "float32")
    with pytest.raises(ValueError, match="no rounding model"):
        numerics.tolerance(1.0, 1, "int8")


def test_an_effect_is_held_to_the_rounding_of_the_log_probs_it_is_the_difference_of():
    """A 2.6e-4-nat effect of two ~11.5-nat float32 log-probs: kernels that round the log-probs by one
    unit each move the effect by ~1e-6, 0.5 % of itself. A relative tolerance on the effect fails;
    the tolerance of the log-probs holds."""
    clean, patched = np.float32(-11.5284872), np.float32(-11.5282234)
    effect = float(patched) - float(clean)
    rounded_otherwise = float(np.nextafter(patched, np.float32(0))) - float(np.nextafter(clean, np.float32(-20)))
    assert abs(rounded_otherwise - effect) > 1e-5 * abs(effect)  # the old rtol-on-the-effect check fails
    held_to = numerics.tolerance(numerics.largest_magnitude([clean, patched]), 2, "float32")
    assert numerics.agreement([rounded_otherwise], [effect], held_to)["agrees"]


def test_agreement_reports_and_refuses():
    result = numerics.agreement(torch.tensor([1.0, 2.0]), np.array([1.0, 2.5]), 0.1)
    assert result == {"largest difference": 0.5, "held to": 0.1, "agrees": False}
    assert numerics.agreement([1.0, np.nan], [1.0, np.nan], 0.0)["agrees"]
    assert not numerics.agreement([1.0, np.nan], [1.0, 2.0], 10.0)["agrees"], "NaN against a number disagrees"
    with pytest.raises(AssertionError, match=r"scores: largest difference 0\.5 exceeds the tolerance 0\.1"):
        numerics.assert_agree([1.0, 2.0], [1.0, 2.5], 0.1, "scores")
    with pytest.raises(ValueError, match="shapes differ"):
        numerics.agreement([1.0], [1.0, 2.0], 1.0)
    assert numerics.largest_magnitude([1.0, -3.0, np.nan], torch.tensor([2.0])) == 3.0
    assert numerics.largest_magnitude(np.array([np.nan])) == 0.0
