"""A cost model of the stages that run the model over many items (``registry.COSTED``):
forward-pass FLOPs and memory per stage.

Used by ``modularity plan`` and the provenance page; calibrate ``flops_per_s`` on a measured run.
"""
from __future__ import annotations

import pandas as pd

#: Forward-pass equivalents per unit of work, as this package runs it: evaluation scores
#: 4 pairs per item on about 3 sequences (pairs share a sequence where answers allow);
#: attribution runs the clean prompt once and the corrupted sequence forward + backward
#: (a backward costs about two forwards); ablation runs about one patched sequence per
#: item and (source, target) cell, plus the corrupted recording and unablated group.
FORWARDS_PER_UNIT = {"evaluation": 3.0, "attribution": 4.0, "ablation": 1.3}


def estimate_cost(n_params: float, n_layers: int, d_model: int, d_ff: int, *, n_tasks: int = 46,
                  n_passing: int, n_items: int = 64, attribution_items: int = 48, ablation_items: int = 16,
                  tokens_per_sequence: int = 60, flops_per_s: float, bytes_per_param: int = 2,
                  attribution_batch: int = 8) -> pd.DataFrame:
    """Seconds and peak memory per stage, from forward-pass FLOPs (≈ 2 · params per token).

    ``flops_per_s`` is the *achieved* throughput (calibrate it on a measured run);
    memory is the weights plus, for attribution, the activations kept for the backward
    pass of one batch of ``attribution_batch`` sequences (≈ 12·d_model + 3·d_ff values
    per token and layer). Returns one row per stage: ``units``, ``forwards``, ``tflop``, ``seconds``,
    ``memory_gb``.
    """
    units = {
        "evaluation": n_tasks * n_items,
        "attribution": n_passing * attribution_items,
        "ablation": n_passing * n_passing * ablation_items,
    }
    weights = n_params * bytes_per_param
    activations = attribution_batch * tokens_per_sequence * n_layers * (12 * d_model + 3 * d_ff) * bytes_per_param
    rows = []
    for stage, count in units.items():
        forwards = count * FORWARDS_PER_UNIT[stage]
        flop = forwards * tokens_per_sequence * 2 * n_params
        rows.append({"stage": stage, "units": count, "forwards": forwards, "tflop": flop / 1e12,
                     "seconds": flop / flops_per_s,
                     "memory_gb": (weights + (activations if stage == "attribution" else 0)) / 1e9})
    return pd.DataFrame(rows)
