"""Speed and memory of the hot paths (evaluation, attribution, ablation) against floors and references.

One process, one run. For each model (a tiny random llama built here, and the embedded
SmolLM2-135M-Instruct unless ``--quick``) it measures, with ``time.perf_counter``, one warm-up
call and the median of ``--repeats`` (≥ 3) timed calls:

1. evaluation   items/s of ``scoring.evaluate_task`` on 3 tasks; a reference that scores each
                item with 4 separate full forwards (``model(ids).logits``, full log_softmax)
                → speed-up.
2. attribution  items/s of ``attribution.attribute_task``; the *floor* (same batches: plain
                clean-prompt forward without grad + corrupted ⊕ y⁺ forward/backward to a leaf
                on the embeddings, no hooks) → ratio to floor; a reference (one item at a
                time, forward hooks keeping full activations with ``retain_grad()``) → speed-up.
3. ablation     cells/s of ``ablation.ablation_logprobs`` + ``summarise_logprobs`` (exactly
                ``ablate_target``; timed in two calls to keep the log-probs for the agreement
                check), with ``--ablation-sets`` (default 24, as a real target; --quick 6)
                random top-0.1%-sized sets on one target; the floor is one plain forward of the
                target's clean ⊕ answer sequences per cell → ratio (timed runs alternate with
                the path's, wall and process CPU time both reported); a reference (one set, one
                item, one answer at a time, plain hooks) → speed-up.
4. memory       peak RSS per phase (Linux: VmHWM reset through /proc/self/clear_refs; elsewhere
                the process high-water mark from getrusage), weight bytes; bytes stored per
                task (one attribution safetensors file, one eval CSV).

Every timing is kept as wall time (``seconds``, ``times``) and process CPU time (``cpu_seconds``,
``cpu_times``): on a loaded shared machine the CPU time is the steadier measure of the work.
Writes a JSON (``--out``, default ``benchmarks/results/<label>.json``) with the machine's
CPU count, torch threads and load average at start and end, and prints a table.

Usage:
    python benchmarks/run_benchmarks.py                    # tiny model + embedded SmolLM2
    python benchmarks/run_benchmarks.py --quick --out /tmp/b.json
    python benchmarks/run_benchmarks.py --threads 1 --label mybox
    python benchmarks/run_benchmarks.py --threads 1 --phases ablation --ablation-sets 24 --out /tmp/a.json
    python benchmarks/run_benchmarks.py --show benchmarks/results/mybox.json   # the table again
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))  # works without the editable install too

from modularity.science import ablation, attribution, batches, scoring
from modularity.records import provenance, store  # noqa: E402
from modularity.science.overlap import top_k_count  # noqa: E402
from modularity.science.models import LoadedModel, load_model, load_tokenizer, model_cache_dir, resolve_model_source
from modularity.science.tasks import generate_task  # noqa: E402

EMBEDDED = "smollm2-135m-instruct"
GiB = 1024**3
#: One task per domain with chat prompts: short (MD), multi-token answers (ToM), long (phys).
EVAL_TASKS = ("add_sub_2op_symbolic", "social_relations", "physics_speed")
#: Attribution and ablation target: prompt and answer lengths near the suite's median.
TARGET_TASK = "phys_newton"
SEED = 0
TARGETS = {
    "attribution_ratio_to_floor_max": 1.3,
    "ablation_ratio_to_forward_per_cell_max": 1.2,
    "peak_rss_max": "weights + 2 GiB",
    "main_job_minutes_max_on_2_cores": 30,
}
#: params/smollm2-135m-instruct.yaml, for the projection of the main job.
MAIN_JOB = {"n_tasks": 46, "n_items": 64, "attribution_items": 48, "ablation_items": 16,
            "controls_per_self_cell": 6}


PHASES = ("evaluation", "attribution", "ablation")
#: Source sets per ablation target: the stage runs one per passing source task plus random
#: controls (15–35 per target in the study's runs); --quick keeps 6.
ABLATION_SETS = 24


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Workload per model. ``*_ref_*``: the slice the (slow) references run on; their rates are
    per item or per cell, so they compare with the optimized rates on the full workload."""

    eval_items: int  # per task
    eval_batch: int
    eval_ref_items: int  # per task
    attr_items: int
    attr_batch: int
    attr_ref_items: int
    abl_items: int
    abl_batch: int
    abl_sets: int
    abl_ref_sets: int
    abl_ref_items: int
    full_warmup: bool  # warm up on the full workload (else on the reference-sized slice)


SIZES = {
    "tiny": Sizes(32, 16, 32, 16, 8, 16, 16, 16, ABLATION_SETS, 6, 16, True),
    "embedded": Sizes(32, 16, 2, 16, 8, 2, 16, 16, ABLATION_SETS, 1, 2, False),
    "quick": Sizes(8, 16, 2, 8, 8, 2, 8, 16, 6, 1, 2, True),
}


# --------------------------------------------------------------------------- timing and memory


def measure(fn: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None,
            min_seconds: float = 0.25) -> dict:
    """One warm-up call, then ``repeats`` timed runs: median and all times (s per call).

    When the warm-up is the workload itself and took less than ``min_seconds``, each timed run
    loops over the workload enough times to last about ``min_seconds`` (timer and scheduler noise
    on a shared machine otherwise dominate millisecond calls); times are per call.
    """
    start = time.perf_counter()
    (warmup or fn)()
    warm = time.perf_counter() - start
    loops = 1 if warmup is not None else max(1, math.ceil(min_seconds / max(warm, 1e-6)))
    times, cpu_times = [], []
    for _ in range(repeats):
        seconds, cpu = _timed(fn, loops)
        times.append(seconds)
        cpu_times.append(cpu)
    return _summary(times, cpu_times, loops)


def _timed(fn: Callable[[], object], loops: int) -> tuple[float, float]:
    """Wall and process CPU seconds per call of ``loops`` calls of ``fn``."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops, (time.process_time() - cpu) / loops


def _summary(times: list[float], cpu_times: list[float], loops: int) -> dict:
    return {"seconds": statistics.median(times), "times": times, "loops_per_run": loops,
            "cpu_seconds": statistics.median(cpu_times), "cpu_times": cpu_times}


def measure_interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                        warmups: dict[str, Callable[[], object] | None] | None = None,
                        min_seconds: float = 0.25) -> dict[str, dict]:
    """:func:`measure` for several workloads whose times are compared (a path and its floor),
    their timed runs alternating (a, b, a, b, ...) so that each sees the same load on a
    shared machine; a workload under ``min_seconds`` loops as in :func:`measure`."""
    warmups = warmups or {}
    loops = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        (warmups.get(name) or fn)()
        warm = time.perf_counter() - start
        loops[name] = 1 if warmups.get(name) is not None else max(1, math.ceil(min_seconds / max(warm, 1e-6)))
    runs = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, cpu = _timed(fn, loops[name])
            runs[name][0].append(seconds)
            runs[name][1].append(cpu)
    return {name: _summary(*runs[name], loops[name]) for name in fns}


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class Memory:
    """Peak resident memory per phase. On Linux writing 5 to /proc/self/clear_refs resets the
    high-water mark (VmHWM); without it the process-wide getrusage maximum is reported."""

    def __init__(self):
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return _status_kb("VmHWM") is not None
        except OSError:
            return False

    def start_phase(self) -> None:
        gc.collect()
        if self.resettable:
            self._reset()

    def peak(self) -> int:
        if self.resettable:
            return _status_kb("VmHWM") * 1024
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    @staticmethod
    def current() -> int:
        kb = _status_kb("VmRSS")
        return kb * 1024 if kb is not None else 0


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return [float("nan")] * 3


# --------------------------------------------------------------------------- models


def _embedded_tokenizer():
    """The embedded SmolLM2 tokenizer. Parsing it from the GGUF takes ~10 s; the dequantized copy
    that ``load_model`` keeps in the model cache holds the same tokenizer as tokenizer.json."""
    from transformers import AutoTokenizer

    try:
        source, kwargs = resolve_model_source(EMBEDDED)
        gguf = Path(source) / kwargs["gguf_file"]
        stamp = f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"
        cached = model_cache_dir() / f"{gguf.stem}-float32-{stamp}"
        if (cached / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(cached)
    except (OSError, KeyError):
        pass
    return load_tokenizer(EMBEDDED)


def build_tiny_llama(directory: Path) -> Path:
    """A tiny random llama with the embedded SmolLM2 tokenizer, as tests/conftest.py builds it."""
    import transformers as tf

    tf.utils.logging.disable_progress_bar()
    tokenizer = _embedded_tokenizer()
    config = tf.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def weight_bytes(model: torch.nn.Module) -> int:
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}  # tied once
    return sum(t.numel() * t.element_size() for t in tensors.values())


# --------------------------------------------------------------------------- plain computations


def _answer_lp_plain(model, batch: batches.Batch, inputs_embeds=None) -> torch.Tensor:
    """Summed answer log-probs, head at the answer positions only; no hooks (the floors)."""
    kwargs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch.input_ids}
    hidden = model.base_model(attention_mask=batch.attention_mask, use_cache=False, **kwargs).last_hidden_state
    logits = model.get_output_embeddings()(hidden[batch.answer_rows, batch.answer_pos]).float()
    token_lp = torch.log_softmax(logits, -1).gather(1, batch.answer_ids[:, None])[:, 0]
    return torch.zeros(batch.n_slots, dtype=token_lp.dtype).index_add(0, batch.answer_slot, token_lp)


def _full_lp(model, prompt: list[int], answer: list[int], inputs_embeds=None) -> torch.Tensor:
    """Reference scoring: full logits of one sequence, full log_softmax, sum over the answer."""
    if inputs_embeds is None:
        logits = model(torch.tensor([prompt + answer])).logits[0]
    else:
        logits = model(inputs_embeds=inputs_embeds).logits[0]
    lp = torch.log_softmax(logits.float(), -1)
    start = len(prompt) - 1
    return lp[torch.arange(start, start + len(answer)), torch.tensor(answer)].sum()


# --------------------------------------------------------------------------- references


@torch.no_grad()
def reference_evaluate(loaded: LoadedModel, task) -> np.ndarray:
    """[4, N] LPcc, LPci, LPrc, LPri — one item at a time, four full forwards each."""
    tokens = scoring.tokenize_task(loaded, task)
    out = np.zeros((4, len(tokens)))
    for i in range(len(tokens)):
        pairs = ((tokens.clean[i], tokens.correct[i]), (tokens.clean[i], tokens.incorrect[i]),
                 (tokens.corrupted[i], tokens.correct[i]), (tokens.corrupted[i], tokens.incorrect[i]))
        for k, (prompt, answer) in enumerate(pairs):
            out[k, i] = float(_full_lp(loaded.model, prompt, answer))
    return out


def reference_attribute(loaded: LoadedModel, tokens, indices, C: float, R: float):
    """Neuron [L, d_ff] and head [L, H] scores, one item at a time: forward hooks keep every
    layer's full site activations, ``retain_grad()`` on them, full logits, ``metric="paper"``."""
    model = loaded.model
    modules = loaded.site_modules("neurons") + loaded.site_modules("heads")
    totals = [torch.zeros(m.in_features, dtype=torch.float64) for m in modules]
    embed = model.get_input_embeddings()
    for i in indices:
        acts: dict[int, torch.Tensor] = {}

        def make_hook(k):
            def hook(module, args, output):
                x = args[0]
                if x.requires_grad:
                    x.retain_grad()
                acts[k] = x

            return hook

        handles = [m.register_forward_hook(make_hook(k)) for k, m in enumerate(modules)]
        try:
            with torch.no_grad():
                model(torch.tensor([tokens.clean[i]]))
            clean = {k: v.detach().clone() for k, v in acts.items()}
            prompt, answer = tokens.corrupted[i], tokens.correct[i]
            leaf = embed(torch.tensor([prompt + answer])).detach().requires_grad_(True)
            with torch.enable_grad():
                _full_lp(model, prompt, answer, inputs_embeds=leaf).backward()
        finally:
            for handle in handles:
                handle.remove()
        t = len(prompt) - 1
        for k in range(len(modules)):
            totals[k] += (acts[k].grad[0, t] * (clean[k][0, t] - acts[k].detach()[0, t])).double()
    scale = 1.0 / (len(indices) * (C - R))
    layers = loaded.n_layers
    neurons = torch.stack(totals[:layers]).float() * scale
    heads = (torch.stack(totals[layers:]).float() * scale).view(layers, loaded.n_heads, loaded.head_dim).sum(-1)
    return neurons, heads


@torch.no_grad()
def reference_ablate(loaded: LoadedModel, tokens, indices, flat_set: np.ndarray) -> np.ndarray:
    """[2, N] LP′(c_n, y⁺), LP′(c_n, y⁻): per item and answer, one corrupted forward recording the
    touched layers' full neuron activations, one clean forward overwriting the set's neurons."""
    layers, neurons = np.divmod(np.asarray(flat_set, dtype=np.int64), loaded.d_ff)
    columns = {int(l): torch.as_tensor(neurons[layers == l]) for l in np.unique(layers)}
    modules = loaded.site_modules("neurons")
    out = np.zeros((2, len(indices)))
    for j, i in enumerate(indices):
        for k, answer in enumerate((tokens.correct[i], tokens.incorrect[i])):
            recorded = {}

            def record(layer):
                def hook(module, args):
                    recorded[layer] = args[0].clone()

                return hook

            def patch(layer):
                def hook(module, args):
                    x = args[0].clone()
                    x[..., columns[layer]] = recorded[layer][..., columns[layer]]
                    return (x,) + tuple(args[1:])

                return hook

            handles = [modules[l].register_forward_pre_hook(record(l)) for l in columns]
            try:
                loaded.model(torch.tensor([tokens.corrupted[i] + answer]))
            finally:
                for handle in handles:
                    handle.remove()
            handles = [modules[l].register_forward_pre_hook(patch(l)) for l in columns]
            try:
                out[k, j] = float(_full_lp(loaded.model, tokens.clean[i], answer))
            finally:
                for handle in handles:
                    handle.remove()
    return out


# --------------------------------------------------------------------------- phases


def bench_model(name: str, loaded: LoadedModel, sizes: Sizes, repeats: int, memory: Memory, log,
                phases=PHASES) -> dict:
    model = loaded.model
    pad_id = loaded.tokenizer.pad_token_id or 0
    result = {
        "model": name, "n_layers": loaded.n_layers, "d_ff": loaded.d_ff, "n_heads": loaded.n_heads,
        "weight_bytes": weight_bytes(model), "rss_after_load_bytes": memory.current(), "sizes": dataclasses.asdict(sizes),
    }
    peaks = {}

    def phase(key: str, fn: Callable[[], dict]) -> dict:
        log(f"  {name}: {key} (load {load_avg()[0]:.2f})")
        memory.start_phase()
        start = time.perf_counter()
        out = fn()
        out["peak_rss_bytes"] = peaks[key] = memory.peak()
        out["load_avg_after"] = load_avg()
        log(f"    done in {time.perf_counter() - start:.1f} s")
        return out

    # 1. evaluation ---------------------------------------------------------------------------
    tasks = [generate_task(t, "small", sizes.eval_items, SEED) for t in EVAL_TASKS]
    ref_tasks = [dataclasses.replace(t, items=t.items[: sizes.eval_ref_items]) for t in tasks]
    frames = {}

    def run_eval(task_list):
        for task in task_list:
            frames[task.name] = scoring.evaluate_task(loaded, task, batch_size=sizes.eval_batch)

    def evaluation():
        n_items = sum(len(t) for t in tasks)
        opt = measure(lambda: run_eval(tasks), repeats, None if sizes.full_warmup else lambda: run_eval(ref_tasks[:1]))
        ref_lp = {}
        ref_fn = lambda: ref_lp.update({t.name: reference_evaluate(loaded, t) for t in ref_tasks})  # noqa: E731
        ref = measure(ref_fn, repeats, None if sizes.full_warmup else
                      lambda: reference_evaluate(loaded, dataclasses.replace(ref_tasks[0], items=ref_tasks[0].items[:1])))
        n_ref = sum(len(t) for t in ref_tasks)
        diff = max(
            float(np.abs(frames[t][["lp_cc", "lp_ci", "lp_rc", "lp_ri"]].to_numpy()[: ref_lp[t].shape[1]].T - ref_lp[t]).max())
            for t in ref_lp
        )
        out = {"tasks": list(EVAL_TASKS), "n_items": n_items, "batch_size": sizes.eval_batch, **opt,
               "items_per_s": n_items / opt["seconds"],
               "reference": {"n_items": n_ref, **ref, "items_per_s": n_ref / ref["seconds"]},
               "max_abs_lp_diff_vs_reference": diff}
        out["speedup_vs_reference"] = out["items_per_s"] / out["reference"]["items_per_s"]
        return out

    if "evaluation" in phases:
        result["evaluation"] = phase("evaluation", evaluation)

    # 2. attribution --------------------------------------------------------------------------
    target = generate_task(TARGET_TASK, "small", max(sizes.attr_items, sizes.abl_items), SEED)
    tokens = scoring.tokenize_task(loaded, target)
    aligned = np.flatnonzero(tokens.aligned)
    C, R = 1.0, 0.0  # baselines only scale the scores; timing does not depend on them
    attr_index = aligned[: sizes.attr_items]
    ref_index = attr_index[: sizes.attr_ref_items]
    scores = {}

    def run_attr(index):
        scores["last"] = attribution.attribute_task(loaded, tokens, index, C, R, metric="paper",
                                                    batch_size=sizes.attr_batch, heads=True)

    def attribution_phase():
        embed = model.get_input_embeddings()
        pairs = []
        for s in range(0, len(attr_index), sizes.attr_batch):
            index = [int(i) for i in attr_index[s : s + sizes.attr_batch]]
            clean = batches.make_batch([tokens.clean[i] for i in index], [[] for _ in index], pad_id)
            corrupted = batches.make_batch([tokens.corrupted[i] for i in index],
                                           [tokens.correct[i] for i in index], pad_id)
            pairs.append((clean, corrupted))

        def floor():
            for clean, corrupted in pairs:
                with torch.no_grad():
                    model.base_model(input_ids=clean.input_ids, attention_mask=clean.attention_mask, use_cache=False)
                leaf = embed(corrupted.input_ids).detach().requires_grad_(True)
                with torch.enable_grad():
                    _answer_lp_plain(model, corrupted, inputs_embeds=leaf).sum().backward()

        small = attr_index[: max(1, sizes.attr_ref_items)]
        opt = measure(lambda: run_attr(attr_index), repeats, None if sizes.full_warmup else lambda: run_attr(small))
        opt_scores = scores["last"]
        flo = measure(floor, repeats)
        ref_out = {}
        ref = measure(lambda: ref_out.update(r=reference_attribute(loaded, tokens, ref_index, C, R)), repeats,
                      None if sizes.full_warmup else lambda: reference_attribute(loaded, tokens, ref_index[:1], C, R))
        run_attr(ref_index)  # the optimized scores on the reference's items (agreement check)
        neurons, heads = ref_out["r"]
        rel = max(float((neurons - scores["last"].neurons).abs().max() / neurons.abs().max()),
                  float((heads - scores["last"].heads).abs().max() / heads.abs().max()))
        n = len(attr_index)
        out = {"task": TARGET_TASK, "n_items": n, "batch_size": sizes.attr_batch, "metric": "paper", "heads": True,
               **opt, "items_per_s": n / opt["seconds"],
               "floor": {**flo, "items_per_s": n / flo["seconds"]},
               "ratio_to_floor": opt["seconds"] / flo["seconds"],
               "reference": {"n_items": len(ref_index), **ref, "items_per_s": len(ref_index) / ref["seconds"]},
               "max_rel_score_diff_vs_reference": rel}
        out["speedup_vs_reference"] = out["items_per_s"] / out["reference"]["items_per_s"]
        with tempfile.TemporaryDirectory() as tmp:
            path = store.write_cache(Path(tmp) / "task.safetensors",
                                     {"neurons": opt_scores.neurons, "heads": opt_scores.heads}, "attribution",
                                     {"task": TARGET_TASK, "metric": "paper", "items": attr_index, "C": C, "R": R})
            safetensors_bytes = path.stat().st_size
            result["storage"] = {"attribution_safetensors_bytes": safetensors_bytes}
            if EVAL_TASKS[0] in frames:  # the evaluation phase ran
                csv_bytes = store.save_table(frames[EVAL_TASKS[0]], Path(tmp) / "eval.csv").stat().st_size
                result["storage"].update({"eval_csv_bytes": csv_bytes, "eval_csv_items": len(frames[EVAL_TASKS[0]]),
                                          "eval_csv_bytes_per_item": csv_bytes / len(frames[EVAL_TASKS[0]])})
        return out

    if "attribution" in phases:
        result["attribution"] = phase("attribution", attribution_phase)

    # 3. ablation -----------------------------------------------------------------------------
    abl_index = aligned[: sizes.abl_items]
    set_size = top_k_count(loaded.n_neurons, 0.1)  # the study's top-0.1% set size
    rng = np.random.default_rng(SEED)
    sets = {f"random{s}": np.sort(rng.choice(loaded.n_neurons, size=set_size, replace=False))
            for s in range(sizes.abl_sets)}
    lps = {}

    def run_ablation(source_sets, index):
        lps["last"] = ablation.ablation_logprobs(loaded, tokens, index, source_sets, mode="corrupted",
                                                 batch_size=sizes.abl_batch)
        ablation.summarise_logprobs(lps["last"], C, R)

    def ablation_phase():
        clean_batches = []
        for s in range(0, len(abl_index), sizes.abl_batch):
            index = abl_index[s : s + sizes.abl_batch].tolist()
            answers = [tokens.correct[i] for i in index] + [tokens.incorrect[i] for i in index]
            clean_batches.append(batches.make_batch([tokens.clean[i] for i in index] * 2, answers, pad_id))

        @torch.no_grad()
        def floor():
            for batch in clean_batches:
                _answer_lp_plain(model, batch)

        first = dict(list(sets.items())[:1])
        ref_sets = list(sets.values())[: sizes.abl_ref_sets]
        ref_index = abl_index[: sizes.abl_ref_items]
        # The path and its floor alternate, so both see the same load on a shared machine.
        timed = measure_interleaved({"opt": lambda: run_ablation(sets, abl_index), "floor": floor}, repeats,
                                    {"opt": None if sizes.full_warmup else lambda: run_ablation(first, ref_index)})
        opt, flo = timed["opt"], timed["floor"]
        patched = lps["last"].patched  # [n_sets, 2, N]
        ref_out = {}
        ref = measure(lambda: ref_out.update(r=[reference_ablate(loaded, tokens, ref_index, s) for s in ref_sets]),
                      repeats, None if sizes.full_warmup else
                      lambda: reference_ablate(loaded, tokens, ref_index[:1], ref_sets[0]))
        diff = max(float(np.abs(patched[k][:, : len(ref_index)] - r).max()) for k, r in enumerate(ref_out["r"]))
        cells = len(sets)
        ref_cells = len(ref_sets) * len(ref_index) / len(abl_index)  # cell-equivalents of the reference's work
        floor_tokens = sum(b.input_ids.numel() for b in clean_batches)
        carrier_tokens = _ablation_carrier_tokens(tokens, abl_index, sizes.abl_batch)
        # Per cell the path runs its carrier sequences once per set, plus once for the unablated
        # group and (at most) once for the corrupted recording, shared by all sets.
        token_ratio = carrier_tokens * (cells + 2) / cells / floor_tokens
        out = {"task": TARGET_TASK, "n_items": len(abl_index), "batch_size": sizes.abl_batch, "n_sets": cells,
               "set_size": set_size, "mode": "corrupted", "cells": cells, **opt, "cells_per_s": cells / opt["seconds"],
               "floor": {**flo, "what": "one plain forward of the target's clean ⊕ answer sequences",
                         "n_sequences": 2 * len(abl_index), "padded_tokens": floor_tokens},
               "ratio_to_forward_per_cell": (opt["seconds"] / cells) / flo["seconds"],
               "ratio_to_forward_per_cell_cpu": (opt["cpu_seconds"] / cells) / flo["cpu_seconds"],
               "carrier_padded_tokens_per_set": carrier_tokens,
               "token_ratio_per_cell": token_ratio,
               "fixed_overhead_note": f"includes the corrupted recording and the unablated group: "
                                      f"({cells}+2)/{cells} = {(cells + 2) / cells:.2f} forwards of the carrier "
                                      f"sequences per cell; y+ and y- share one carrier when they differ only in "
                                      f"their last token, which is not run, so a carrier forward is "
                                      f"{carrier_tokens / floor_tokens:.2f} of the floor's padded tokens and the "
                                      f"tokens run per cell are {token_ratio:.2f} floors",
               "reference": {"n_sets": len(ref_sets), "n_items": len(ref_index), "cell_equivalents": ref_cells, **ref,
                             "cells_per_s": ref_cells / ref["seconds"]},
               "max_abs_lp_diff_vs_reference": diff}
        out["speedup_vs_reference"] = out["cells_per_s"] / out["reference"]["cells_per_s"]
        # Cost per token run against the floor's cost per token (1 = no overhead beyond the forwards).
        out["overhead_per_token_cpu"] = out["ratio_to_forward_per_cell_cpu"] / token_ratio
        return out

    if "ablation" in phases:
        result["ablation"] = phase("ablation", ablation_phase)

    peak = max(peaks.values())
    result["memory"] = {"weight_bytes": result["weight_bytes"], "peak_rss_bytes": peak,
                        "peak_rss_by_phase_bytes": peaks, "per_phase_reset": memory.resettable,
                        "peak_minus_weights_bytes": peak - result["weight_bytes"],
                        "within_target": peak <= result["weight_bytes"] + 2 * GiB}
    return result


def _ablation_carrier_tokens(tokens, index, batch_size: int) -> int:
    """Padded tokens of the carrier sequences ``ablation_logprobs`` runs once per set (as it
    builds them: y⁺ and y⁻ share a carrier where they can, the carrier's last token dropped)."""
    total = 0
    for s in range(0, len(index), batch_size):
        items = [int(i) for i in index[s : s + batch_size]] * 2
        n = len(items) // 2
        answers = [tokens.correct[i] for i in items[:n]] + [tokens.incorrect[i] for i in items[:n]]
        carriers, _ = batches.plan_carriers([tokens.clean[i] for i in items], answers, keys=items)
        width = max(len(tokens.clean[items[p]]) + len(answer) - 1 for p, answer in carriers)
        total += width * len(carriers)
    return total


def projection(embedded: dict) -> dict:
    """The main job (params/smollm2-135m-instruct.yaml) projected from the measured rates, for
    a number P of tasks passing the filter (P is known only after the evaluation stage)."""
    m = MAIN_JOB
    eval_s = m["n_tasks"] * m["n_items"] / embedded["evaluation"]["items_per_s"]
    attr_task_s = m["attribution_items"] / embedded["attribution"]["items_per_s"]
    cell_s = (embedded["ablation"]["seconds"] / embedded["ablation"]["cells"]) * m["ablation_items"] / embedded["ablation"]["n_items"]
    totals = {}
    for p in (10, 23, 46):
        cells = p * p + m["controls_per_self_cell"] * p
        totals[str(p)] = {"cells": cells, "minutes": (eval_s + p * attr_task_s + cells * cell_s) / 60}
    return {"assumes": m, "eval_suite_s": eval_s, "attribution_per_task_s": attr_task_s,
            "ablation_per_cell_s": cell_s, "total_by_passing_tasks": totals,
            "note": "eval + P·attribution + (P² + 6P) ablation cells; excludes model loading, "
                    "overlap/statistics stages and notebook execution"}


# --------------------------------------------------------------------------- report


def _fmt_rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def table(report: dict) -> str:
    lines = []
    m = report["machine"]
    lines.append(f"label {report['label']} | {m['cpu_model']} | {m['cpu_count']} CPUs | torch threads "
                 f"{m['torch_threads']} | load avg start {m['load_avg_start']} end {m['load_avg_end']}")
    head = f"{'model':<22} {'phase':<12} {'rate':>14} {'ref rate':>10} {'speed-up':>9} {'ratio':>7} {'target':>7} {'peak RSS':>9}"
    lines += [head, "-" * len(head)]
    for name, r in report["models"].items():
        ev, at, ab = r.get("evaluation"), r.get("attribution"), r.get("ablation")
        rows = []
        if ev:
            rows.append(("evaluation", f"{_fmt_rate(ev['items_per_s'])} it/s", _fmt_rate(ev["reference"]["items_per_s"]),
                         ev["speedup_vs_reference"], "", "", ev["peak_rss_bytes"]))
        if at:
            rows.append(("attribution", f"{_fmt_rate(at['items_per_s'])} it/s", _fmt_rate(at["reference"]["items_per_s"]),
                         at["speedup_vs_reference"], f"{at['ratio_to_floor']:.2f}", "≤1.30", at["peak_rss_bytes"]))
        if ab:
            rows.append(("ablation", f"{_fmt_rate(ab['cells_per_s'])} cell/s", _fmt_rate(ab["reference"]["cells_per_s"]),
                         ab["speedup_vs_reference"], f"{ab['ratio_to_forward_per_cell']:.2f}", "≤1.20",
                         ab["peak_rss_bytes"]))
        for phase, rate, ref, speed, ratio, target, peak in rows:
            lines.append(f"{name:<22} {phase:<12} {rate:>14} {ref:>10} {speed:>8.1f}× {ratio:>7} {target:>7} "
                         f"{peak / 2**20:>6.0f} MiB")
        mem, st = r["memory"], r.get("storage", {})
        stored = ""
        if "attribution_safetensors_bytes" in st:
            stored = f"; stored per task: attribution {st['attribution_safetensors_bytes'] / 1024:.1f} KiB"
            if "eval_csv_bytes" in st:
                stored += f", eval CSV {st['eval_csv_bytes'] / 1024:.1f} KiB ({st['eval_csv_items']} items)"
        lines.append(f"{'':<22} memory: weights {mem['weight_bytes'] / 2**20:.0f} MiB, peak RSS "
                     f"{mem['peak_rss_bytes'] / 2**20:.0f} MiB (target ≤ weights + 2 GiB: "
                     f"{'met' if mem['within_target'] else 'NOT met'}){stored}")
        agree = [f"{label} {sign} {rec[key]:.1e}" for label, sign, rec, key in (
            ("eval |ΔLP|", "≤", ev, "max_abs_lp_diff_vs_reference"),
            ("attribution rel", "≤", at, "max_rel_score_diff_vs_reference"),
            ("ablation |ΔLP|", "≤", ab, "max_abs_lp_diff_vs_reference")) if rec]
        lines.append(f"{'':<22} agreement with references: " + ", ".join(agree))
        if ab and "ratio_to_forward_per_cell_cpu" in ab:
            lines.append(f"{'':<22} ablation: {ab['n_sets']} sets × {ab['n_items']} items per target; per cell "
                         f"{ab['seconds'] / ab['cells']:.2f} s wall, {ab['cpu_seconds'] / ab['cells']:.2f} s CPU; "
                         f"ratio to one forward: wall {ab['ratio_to_forward_per_cell']:.2f}, CPU "
                         f"{ab['ratio_to_forward_per_cell_cpu']:.2f}; tokens run per cell "
                         f"{ab['token_ratio_per_cell']:.2f} × the floor's (CPU cost per token "
                         f"{ab['overhead_per_token_cpu']:.2f} × the floor's)")
    if "projection" in report:
        p = report["projection"]
        parts = ", ".join(f"P={k}: {v['minutes']:.0f} min" for k, v in p["total_by_passing_tasks"].items())
        lines.append(f"projected main job ({EMBEDDED}, P passing tasks; target ≤ 30 min on 2 cores): {parts}")
    return "\n".join(lines)


def machine_info() -> dict:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_kb = None
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_model": cpu_model, "cpu_count": os.cpu_count(),
            "cpus_usable": affinity, "mem_total_bytes": mem_kb * 1024 if mem_kb else None,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only, few items (seconds)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median; ≥ 3)")
    parser.add_argument("--label", default=None, help="name of this machine/run (default: hostname)")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/<label>.json)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. why --threads 1)")
    parser.add_argument("--show", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    parser.add_argument("--ablation-sets", type=int, default=None, metavar="S",
                        help=f"source sets per ablation target (default {ABLATION_SETS}; --quick: 6)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="phases to run (default: all; the projection needs all three)")
    args = parser.parse_args(argv)
    if args.show:
        print(table(json.loads(Path(args.show).read_text())))
        return 0
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    if args.ablation_sets is not None and args.ablation_sets < 1:
        parser.error("--ablation-sets must be at least 1")
    phases = tuple(p for p in PHASES if p in args.phases)

    def sizes_of(kind: str) -> Sizes:
        sizes = SIZES[kind]
        if args.ablation_sets is not None:
            sizes = dataclasses.replace(sizes, abl_sets=args.ablation_sets,
                                        abl_ref_sets=min(sizes.abl_ref_sets, args.ablation_sets))
        return sizes

    if args.threads:
        torch.set_num_threads(args.threads)
    label = args.label or socket.gethostname()
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"{label}.json"
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    started = time.perf_counter()
    machine = machine_info()
    machine["load_avg_start"] = load_avg()
    memory = Memory()
    report = {"schema": 1, "label": label, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "git_sha": provenance.git_sha(), "options": {"quick": args.quick, "threads": args.threads,
                                                     "repeats": args.repeats, "note": args.note,
                                                     "phases": list(phases), "ablation_sets": args.ablation_sets},
              "targets": TARGETS, "machine": machine, "baseline_rss_bytes": memory.current(), "models": {}}

    with tempfile.TemporaryDirectory() as tmp:
        log("building the tiny llama")
        tiny = load_model(str(build_tiny_llama(Path(tmp) / "tiny-llama")))
        report["models"]["tiny-llama"] = bench_model("tiny-llama", tiny, sizes_of("quick" if args.quick else "tiny"),
                                                     args.repeats, memory, log, phases)
        del tiny
    if not args.quick:
        gc.collect()
        log(f"loading {EMBEDDED}")
        embedded = load_model(EMBEDDED)
        report["models"][EMBEDDED] = bench_model(EMBEDDED, embedded, sizes_of("embedded"), args.repeats, memory,
                                                 log, phases)
        if phases == PHASES:
            report["projection"] = projection(report["models"][EMBEDDED])
        del embedded

    machine["load_avg_end"] = load_avg()
    report["wall_s"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(table(report))
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
