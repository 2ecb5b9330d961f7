"""benchmarks/gpu_check.py without a GPU: its arithmetic, and a clear refusal."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured_stages():
    return pd.DataFrame({"dtype": "bfloat16", "stage": ["evaluation", "attribution", "overlap", "ablation"],
                         "seconds": [2.0, 4.0, 1.0, 8.0], "tokens": [1_000_000, 500_000, 0, 4_000_000],
                         "grad_tokens": [0, 250_000, 0, 0], "n_params": 100_000_000})


def test_throughput_counts_a_differentiated_forward_three_times(gpu_check):
    rates = gpu_check.throughput(measured_stages(), peak_tflops=1000.0).set_index("stage")
    assert rates.loc["evaluation", "tokens_per_s"] == 500_000
    assert rates.loc["evaluation", "tflops"] == pytest.approx(2 * 1e8 * 1e6 / 2.0 / 1e12)
    flop = 2 * 1e8 * 250_000 + 6 * 1e8 * 250_000
    assert rates.loc["attribution", "tflops"] == pytest.approx(flop / 4.0 / 1e12)
    assert rates.loc["ablation", "share_of_bf16_peak"] == pytest.approx(rates.loc["ablation", "tflops"] / 1000.0)


def test_the_7b_projection_divides_the_plans_flops_by_the_measured_rates(gpu_check):
    rates = gpu_check.throughput(measured_stages(), peak_tflops=1000.0)
    projection = gpu_check.projection_7b(rates)
    assert set(projection["seconds"]) == {"evaluation", "attribution", "ablation"}
    twice_as_fast = rates.assign(tflops=rates.tflops * 2)
    assert gpu_check.projection_7b(twice_as_fast)["hours"] == pytest.approx(projection["hours"] / 2)
    assert projection["seconds"]["ablation"] > projection["seconds"]["evaluation"]  # 46² cells


def test_without_cuda_it_says_so(gpu_check, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert gpu_check.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().out
