"""Plan a run before starting it: model size, memory and time per stage on a named device.

Nothing here loads weights. :func:`read_model_config` reads a model's config (a
``config.json``, a Hugging Face id through ``AutoConfig``, or the metadata of an
embedded GGUF); :func:`model_geometry` turns it into sizes and a parameter count;
:func:`plan_run` combines them with a run's params and a :class:`DeviceSpec` into a
:class:`Plan`; :func:`format_plan` writes it as text (``modularity plan``).

Time and memory come from the package's cost model, :func:`modularity.running.cost.estimate_cost`
(FLOPs ≈ 2 · parameters per token; attribution keeps its batch's activations). FLOPs
become seconds through an *achieved* throughput: for a CPU calibrated on the measured
main job (:data:`MAIN_JOB`), for a GPU a stated fraction of its peak. Every estimate is
an estimate: the assumptions travel with the plan and are printed with it.

Units: memory in GB = 1e9 bytes (as ``estimate_cost``), throughput in FLOP/s, time in s.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .cost import FORWARDS_PER_UNIT, estimate_cost
from ..stages import registry
from ..base.files import REPO_ROOT
from ..science.tasks import load_suite
GB = 1e9
#: The stages whose cost grows with the model (the rest run on the CPU in seconds to minutes).
STAGES = registry.COSTED
BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}

#: Share of a device's memory the run may use: the rest goes to the CUDA context,
#: allocator fragmentation and (on a CPU) the operating system.
USABLE_FRACTION = 0.90

#: Mean and longest sequence (prompt + answer) in tokens. The committed runs average
#: 39–66 prompt tokens per item and reach 191 (``eval_items.csv``, ``clean_len``), so time
#: uses estimate_cost's default of 60 and memory the longest batch.
TOKENS_MEAN = 60
TOKENS_MAX = 192

#: Largest batch worth reporting: beyond it memory is not what limits the batch.
BATCH_CAP = 1024


# --------------------------------------------------------------------------
# Model geometry from a config
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelGeometry:
    """A model's sizes, counted on a weightless copy built from its config.

    ``n_params`` counts every parameter once (a tied output head shares the input
    embedding); ``n_embedding_params`` is the input embedding (plus a learned position
    table) and the output head when untied. Their difference, :attr:`n_flop_params`,
    is what costs FLOPs per token: an embedding is a lookup, and the stages apply the
    output head only at the few answer positions (``batches.answer_logprobs``). A mixture of
    experts has ``n_experts`` experts of ``d_expert`` neurons per layer; the stages compute every
    expert for every token (so that each expert neuron has a value everywhere), so all expert
    parameters cost FLOPs, not only the routed ones.
    """

    family: str
    model_type: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    n_params: int
    n_embedding_params: int
    n_experts: int = 0
    d_expert: int = 0

    @property
    def n_neurons(self) -> int:
        """MLP neurons, L · d_ff (book methods §3); for a mixture of experts every expert's, L · E · d_expert."""
        return self.n_layers * self.d_ff

    @property
    def n_flop_params(self) -> int:
        return self.n_params - self.n_embedding_params


def model_geometry(config) -> ModelGeometry:
    """Sizes and parameter count of a causal LM from its config, read off a weightless (meta) copy.

    ``config``: a ``transformers`` config or the dict of a ``config.json``. The sites are found as
    :func:`modularity.science.models.load_model` finds them, so ``plan`` and ``run`` accept the same
    models: :class:`modularity.science.models.UnsupportedModelError` otherwise.
    """
    import torch

    from ..science.architecture import config_from_dict, head_count, meta_model, projection_widths, text_config
    from ..science.models import check_supported

    config = config_from_dict(config)
    family = check_supported(config)
    model = meta_model(config)
    blocks = model.get_submodule(family.layers[0])
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = outputs is not None and outputs.weight is inputs.weight
    inside = {id(p) for p in blocks.parameters()}
    # Lookups cost no FLOPs: every embedding table outside the blocks (token, and position where learned).
    tables = {id(m.weight): m.weight.numel() for m in model.modules()
              if isinstance(m, torch.nn.Embedding) and id(m.weight) not in inside}
    embeddings = sum(tables.values()) + (0 if tied or outputs is None else outputs.weight.numel())
    n_heads = head_count(config) or 0
    attn_width = projection_widths(blocks[0].get_submodule(family.attn_out))[0] if family.has_heads else 0
    d_ff = (family.n_experts * family.d_expert if family.is_moe
            else projection_widths(blocks[0].get_submodule(family.mlp_down))[0])
    text = text_config(config)
    return ModelGeometry(
        family=family.name, model_type=family.name, n_layers=len(blocks), d_model=inputs.embedding_dim, d_ff=d_ff,
        n_heads=n_heads, n_kv_heads=getattr(text, "num_key_value_heads", None) or n_heads,
        head_dim=attn_width // n_heads if attn_width and n_heads else 0, vocab=inputs.num_embeddings, tied=tied,
        n_params=sum(p.numel() for p in model.parameters()), n_embedding_params=embeddings,
        n_experts=family.n_experts, d_expert=family.d_expert,
    )


class ConfigUnavailableError(FileNotFoundError):
    """A model's config cannot be read here (offline hub id, gated model, missing file)."""


def read_model_config(model: str, config_path: str | Path | None = None):
    """The config of ``model`` without its weights.

    ``config_path`` (a ``config.json`` or a folder holding one) wins over ``model``;
    otherwise ``model`` is resolved like :func:`modularity.science.models.load_model` does: an
    embedded alias or ``.gguf`` gives the GGUF's metadata (not dequantized), a local
    folder its ``config.json``, anything else a Hugging Face id (hub or local HF cache).
    """
    if config_path is not None:
        return _read_config_json(Path(config_path))
    from transformers import AutoConfig

    from ..science.models import resolve_model_source

    source, kwargs = resolve_model_source(model)
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        offline = ("HF_HUB_OFFLINE is set: unset it where there is network" if os.environ.get("HF_HUB_OFFLINE")
                   else "HF_HUB_OFFLINE=1 skips the hub's retries when there is no network")
        raise ConfigUnavailableError(
            f"cannot read the config of {model!r} here ({reason}). To plan without the hub, fetch only its "
            f"config.json where there is network (`hf download {model} config.json --local-dir DIR`; "
            "gated models need `hf auth login`) and pass --config DIR/config.json (or point model: at a local "
            f"copy of the model); {offline}."
        ) from None
    except ValueError as error:  # transformers does not know the model_type
        raise ConfigUnavailableError(f"cannot interpret the config of {model!r}: {error}".replace("\n", " ")) from None


def _read_config_json(path: Path) -> dict:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {file}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not valid JSON ({error})") from None


# --------------------------------------------------------------------------
# The work a run does
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What a params file asks for, in the units of ``estimate_cost``.

    ``n_passing`` tasks pass the filter (unknown before stage 1: by default every task,
    an upper bound; ablation grows with its square). ``attribution_items`` and
    ``ablation_items`` are per task / per target, capped by ``n_items``.
    """

    n_tasks: int
    n_items: int
    n_passing: int
    attribution_items: int
    ablation_items: int
    batch_size: int
    metric: str
    dtype: str
    placement: str  # "cpu", "single" (one GPU: device cuda / cuda:N) or "auto" (accelerate over all GPUs)
    tokens_mean: int = TOKENS_MEAN
    tokens_max: int = TOKENS_MAX
    passing_assumed: bool = True

    @property
    def bytes_per_param(self) -> int:
        return BYTES_PER_PARAM[self.dtype]

    def attribution_sequences(self, batch_size: int | None = None) -> int:
        """Sequences in one backward pass: the stage attributes ``batch_size // 2`` items at
        a time (02_attribution), each one corrupted ⊕ y⁺ sequence (``logit_diff``: also y⁻)."""
        items = max(1, (batch_size or self.batch_size) // 2)
        return items * (2 if self.metric == "logit_diff" else 1)


def workload_from_params(params: dict, n_passing: int | None = None, dtype: str | None = None,
                         tokens_mean: int = TOKENS_MEAN, tokens_max: int = TOKENS_MAX) -> Workload:
    """The :class:`Workload` of validated ``params`` (:func:`modularity.records.params.load_params`)."""
    n_tasks, n_items = _task_counts(params)
    if n_passing is not None and not 0 <= n_passing <= n_tasks:
        raise ValueError(f"--passing {n_passing} must lie between 0 and the run's {n_tasks} tasks")
    device = params["device"]
    placement = "cpu" if device == "cpu" else "auto" if device == "auto" else "single"
    return Workload(
        n_tasks=n_tasks, n_items=n_items, n_passing=n_tasks if n_passing is None else n_passing,
        attribution_items=min(params["attribution_items"] or n_items, n_items),
        ablation_items=min(params["ablation_items"] or n_items, n_items),
        batch_size=params["batch_size"], metric=params["metric"], dtype=dtype or params["dtype"],
        placement=placement, tokens_mean=tokens_mean, tokens_max=tokens_max, passing_assumed=n_passing is None,
    )


def _task_counts(params: dict) -> tuple[int, int]:
    """(tasks, items per task) without generating items; a ``data_dir`` is read for its sizes."""
    if params["data_dir"]:
        suite = load_suite(params)
        return len(suite), max(1, round(sum(len(t.items) for t in suite.values()) / max(1, len(suite))))
    from ..science.tasks import TASK_NAMES

    return (len(TASK_NAMES) if params["tasks"] == "all" else len(params["tasks"])), params["n_items"]


# --------------------------------------------------------------------------
# Devices and throughput
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuModel:
    """Datasheet numbers: dense tensor-core bf16/fp16 peak, plain fp32 peak (torch's default
    float32 matmul does not use TF32), memory per GPU as the product names it."""

    peak_bf16_tflops: float
    peak_fp32_tflops: float
    named_memory: float

    @property
    def memory_gb(self) -> float:
        return named_gpu_memory_gb(self.named_memory)


def named_gpu_memory_gb(named: float) -> float:
    """GB (1e9 bytes) of a GPU sold as ``named`` "GB": those are GiB. An "H100 80GB" has
    85.0e9 bytes (torch's ``total_memory``), an "H200 141GB" about 150e9."""
    return named * 2**30 / GB


GPU_MODELS = {
    "H100": GpuModel(989, 67, 80),    # SXM
    "H200": GpuModel(989, 67, 141),
    "A100": GpuModel(312, 19.5, 80),
}

#: Achieved share of the peak assumed for a GPU: the provenance page assumes 300 TFLOP/s on
#: an H100 (about a third of 989), and short sequences with hooks rarely do better.
DEFAULT_GPU_EFFICIENCY = 0.30

#: Host-to-GPU copy rate assumed for offloaded weights (PCIe, achieved), GB/s.
OFFLOAD_GB_PER_S = 25.0


@dataclass(frozen=True)
class DeviceSpec:
    """The machine a plan is for.

    ``count`` devices of ``memory_gb`` each (a CPU is one device with its RAM);
    ``flops_per_s`` the achieved throughput per stage, FLOP/s; ``throughput_source``
    says where it comes from; ``detected`` whether it was read from this machine.
    """

    kind: str  # "cpu" or "cuda"
    name: str
    count: int
    memory_gb: float
    flops_per_s: dict
    throughput_source: str
    detected: bool = False


@dataclass(frozen=True)
class Calibration:
    """Achieved CPU throughput per stage, measured on a recorded run."""

    source: str
    measured: str
    flops_per_s: dict
    description: str


#: The measured main job and the facts about it its JSON does not record: the date (of the
#: commit b7b1aa2 that added it) and how many of the 46 tasks passed (18, eval_summary.csv
#: committed at b7b1aa2, which the JSON's note says the job reproduced).
MAIN_JOB = REPO_ROOT / "benchmarks" / "results" / "main_job_shared-2core-epyc.json"
MAIN_JOB_DATE = "2026-11-21"
MAIN_JOB_TASKS, MAIN_JOB_PASSING = 46, 18

#: smollm2-135m-instruct's config as its GGUF gives it (tests/test_plan.py checks this
#: against the installed model), kept here so the calibration works without the model.
SMOLLM2_CONFIG = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536,
                  "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
                  "tie_word_embeddings": True}


def cpu_calibration(path: Path = MAIN_JOB) -> Calibration:
    """Achieved CPU FLOP/s per stage = estimate_cost's FLOPs for the measured main job ÷ its wall time.

    Per stage, because the stages differ in efficiency (attribution's backward, ablation's
    patching). The wall times include loading the model and starting the notebook, and the
    cost model's simplifications (every item scored, every passing task with enough
    both-correct items), so these are *effective* rates: they reproduce the measured job.
    """
    job = json.loads(Path(path).read_text())
    params = job["params"]
    workload = Workload(n_tasks=MAIN_JOB_TASKS, n_items=params["n_items"], n_passing=MAIN_JOB_PASSING,
                        attribution_items=params["attribution_items"], ablation_items=params["ablation_items"],
                        batch_size=params["batch_size"], metric=params["metric"], dtype=params["dtype"],
                        placement="cpu")
    tflop = stage_costs(model_geometry(SMOLLM2_CONFIG), workload).set_index("stage").tflop
    rates = {stage: tflop[stage] * 1e12 / job["stage_wall_s"][registry.stage(stage).notebook] for stage in STAGES}
    path = Path(path)
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    threads = params.get("threads") or "torch's default"
    description = (f"{shown} (measured {MAIN_JOB_DATE}, code {job['git_sha'][:7]}: {params['model']} "
                   f"{params['dtype']}, threads {threads}, on a {job['machine'].split(';')[0]}): effective "
                   + ", ".join(f"{stage} {rate / 1e9:.0f}" for stage, rate in rates.items()) + " GFLOP/s")
    return Calibration(path.name, MAIN_JOB_DATE, rates, description)


def cpu_device(memory_gb: float | None = None, cores: int | None = None,
               calibration: Calibration | None = None) -> DeviceSpec:
    """This CPU (or one with ``memory_gb`` of RAM), throughput from :func:`cpu_calibration`."""
    calibration = calibration or cpu_calibration()
    detected = memory_gb is None
    memory_gb = cpu_memory_gb() if memory_gb is None else memory_gb
    cores = cores or os.cpu_count() or 1
    return DeviceSpec("cpu", f"CPU ({cores} cores)", 1, memory_gb, dict(calibration.flops_per_s),
                      f"calibrated on {calibration.description}; not rescaled to this CPU's {cores} cores",
                      detected)


def gpu_device(count: int, memory_gb: float | None = None, model: str | None = None, dtype: str = "bfloat16",
               efficiency: float = DEFAULT_GPU_EFFICIENCY, detected: bool = False) -> DeviceSpec:
    """``count`` GPUs of ``memory_gb`` (1e9 bytes; default the model's, see
    :func:`named_gpu_memory_gb`); throughput = ``efficiency`` × the model's peak for ``dtype``
    (an assumption).

    With ``device: auto`` accelerate puts consecutive layers on different GPUs, which then
    run one after another: the throughput is one GPU's whatever ``count`` is.
    """
    if count < 1:
        raise ValueError(f"--gpus {count}: need at least one GPU")
    if not 0 < efficiency <= 1:
        raise ValueError(f"--gpu-efficiency {efficiency} must lie in (0, 1]")
    model = (model or guess_gpu_model(memory_gb)).upper()
    if model not in GPU_MODELS:
        raise ValueError(f"unknown GPU model {model!r}; known: {sorted(GPU_MODELS)}")
    spec = GPU_MODELS[model]
    memory_gb = spec.memory_gb if memory_gb is None else memory_gb
    peak = spec.peak_fp32_tflops if dtype == "float32" else spec.peak_bf16_tflops
    kind = "fp32" if dtype == "float32" else "bf16/fp16 dense"
    source = (f"assumed {efficiency:.0%} of the {model}'s {kind} peak {peak:g} TFLOP/s = "
              f"{efficiency * peak:.0f} TFLOP/s, one GPU at a time (not measured)")
    return DeviceSpec("cuda", model, count, memory_gb, {s: efficiency * peak * 1e12 for s in STAGES},
                      source, detected)


def guess_gpu_model(memory_gb: float | None) -> str:
    """H200 for ≥ 120 GB per GPU, else H100 (a guess; ``--gpu-model`` says it)."""
    return "H200" if memory_gb and memory_gb >= 120 else "H100"


def gpu_model_from_name(name: str) -> str | None:
    """``"NVIDIA H100 80GB HBM3"`` → ``"H100"``; None when not in :data:`GPU_MODELS`."""
    return next((model for model in GPU_MODELS if model in name.upper()), None)


def visible_gpus() -> list[tuple[str, float]]:
    """``[(name, memory GB)]`` of the GPUs torch sees here (empty on a CPU machine)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / GB)
            for i in range(torch.cuda.device_count())]


def cpu_memory_gb() -> float:
    """This machine's RAM, GB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------
def stage_costs(geometry: ModelGeometry, workload: Workload, tokens: int | None = None,
                attribution_batch: int | None = None) -> pd.DataFrame:
    """``estimate_cost``'s rows for this model and run, FLOPs from the non-embedding parameters.

    Columns ``stage, units, forwards, tflop, seconds, memory_gb``; ``seconds`` at 1 FLOP/s,
    ``memory_gb`` counts only the non-embedding weights (see :func:`plan_run`).
    """
    return estimate_cost(
        geometry.n_flop_params, geometry.n_layers, geometry.d_model, geometry.d_ff,
        n_tasks=workload.n_tasks, n_passing=workload.n_passing, n_items=workload.n_items,
        attribution_items=workload.attribution_items, ablation_items=workload.ablation_items,
        tokens_per_sequence=tokens or workload.tokens_mean, flops_per_s=1.0,
        bytes_per_param=workload.bytes_per_param,
        attribution_batch=workload.attribution_sequences() if attribution_batch is None else attribution_batch,
    )


def activation_gb_per_sequence(geometry: ModelGeometry, workload: Workload) -> dict[str, float]:
    """Memory one sequence of ``tokens_max`` tokens adds to each stage, GB.

    Attribution: estimate_cost's activation term (its memory with a batch of one minus
    with none), kept for the backward pass. Evaluation and ablation run without
    gradients, so only about two layers' activations are alive at once (our assumption).
    """
    def attribution_memory(batch: int) -> float:
        frame = stage_costs(geometry, workload, tokens=workload.tokens_max, attribution_batch=batch)
        return float(frame.set_index("stage").memory_gb["attribution"])

    attribution = attribution_memory(1) - attribution_memory(0)
    no_grad = attribution * 2 / geometry.n_layers
    return {"evaluation": no_grad, "attribution": attribution, "ablation": no_grad}


def sequences_per_pass(stage: str, workload: Workload, batch_size: int) -> int:
    """Sequences one pass holds at ``batch_size``: ablation runs both answers of its items."""
    if stage == "attribution":
        return workload.attribution_sequences(batch_size)
    return batch_size * (2 if stage == "ablation" else 1)


def largest_batch_size(stage: str, free_gb: float, per_sequence_gb: float, workload: Workload) -> int:
    """Largest params ``batch_size`` (≤ :data:`BATCH_CAP`) whose pass fits in ``free_gb``; 0 if none."""
    if free_gb <= 0:
        return 0
    best = 0
    low, high = 1, BATCH_CAP
    while low <= high:  # memory grows with batch_size: bisect
        middle = (low + high) // 2
        if sequences_per_pass(stage, workload, middle) * per_sequence_gb <= free_gb:
            best, low = middle, middle + 1
        else:
            high = middle - 1
    return best


@dataclass
class Plan:
    """A run's estimated cost on a device.

    ``stages``: one row per stage (``stage, units, forwards, tflop, seconds, memory_gb,
    fits``), memory at the params' ``batch_size`` and the longest sequences.
    ``usable_gb``: memory the params' placement may use (one GPU for ``device: cuda``, all
    for ``device: auto``, the RAM for a CPU). ``largest_batch``: per stage, the largest
    params ``batch_size`` that fits there. ``gpus_needed``: per GPU model, how many hold
    the weights and one attribution pass at batch_size 2.
    """

    model: str
    geometry: ModelGeometry
    workload: Workload
    device: DeviceSpec
    stages: pd.DataFrame
    weights_gb: float
    usable_gb: float
    usable_all_gb: float
    largest_batch: dict
    gpus_needed: dict
    advice: list = field(default_factory=list)
    assumptions: list = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return bool(self.stages.fits.all())

    @property
    def total_seconds(self) -> float:
        return float(self.stages.seconds.sum())

    def seconds_with_processes(self, n: int) -> float:
        """Estimated wall time when ``n`` processes share the run (:mod:`modularity.running.shards`):
        evaluation splits by task, attribution and ablation by passing task (the ablation's targets),
        so each stage takes its time × ⌈units / n⌉ / units."""
        units = {"evaluation": self.workload.n_tasks, "attribution": self.workload.n_passing,
                 "ablation": self.workload.n_passing}
        return float(sum(row.seconds * math.ceil(units[row.stage] / n) / max(units[row.stage], 1)
                         for row in self.stages.itertuples()))


def usable_gb(device: DeviceSpec, workload: Workload) -> tuple[float, float]:
    """(memory the params' placement may use, memory of all devices), GB."""
    total = device.count * device.memory_gb * USABLE_FRACTION
    if device.kind == "cuda" and workload.placement != "auto":
        return device.memory_gb * USABLE_FRACTION, total
    return total, total


def plan_run(geometry: ModelGeometry, workload: Workload | dict, device: DeviceSpec, model: str = "") -> Plan:
    """Time, memory and fit of every expensive stage of ``workload`` (or validated params) on ``device``."""
    if isinstance(workload, dict):
        model = model or workload["model"]
        workload = workload_from_params(workload)
    weights_gb = geometry.n_params * workload.bytes_per_param / GB
    usable, usable_all = usable_gb(device, workload)
    per_sequence = activation_gb_per_sequence(geometry, workload)
    stages = stage_costs(geometry, workload)
    stages["seconds"] = [row.tflop * 1e12 / device.flops_per_s[row.stage] for row in stages.itertuples()]
    stages["memory_gb"] = [weights_gb + sequences_per_pass(s, workload, workload.batch_size) * per_sequence[s]
                           for s in stages.stage]
    stages["fits"] = stages.memory_gb <= usable
    largest = {s: largest_batch_size(s, usable - weights_gb, per_sequence[s], workload) for s in STAGES}
    plan = Plan(model, geometry, workload, device, stages, weights_gb, usable, usable_all, largest,
                gpus_needed(weights_gb + per_sequence["attribution"] * workload.attribution_sequences(2)))
    plan.advice = advice(plan, per_sequence)
    plan.assumptions = assumptions(plan)
    return plan


def gpus_needed(memory_gb: float) -> dict[str, int]:
    """GPUs of each size in :data:`GPU_MODELS` ("80 GB", "141 GB") that hold ``memory_gb`` with ``device: auto``."""
    sizes = sorted({spec.named_memory for spec in GPU_MODELS.values()})
    return {f"{size:g} GB": max(1, math.ceil(memory_gb / (named_gpu_memory_gb(size) * USABLE_FRACTION)))
            for size in sizes}


def offload_seconds(plan: Plan, offloaded_gb: float) -> float:
    """Extra time when ``offloaded_gb`` of weights live in CPU RAM: every pass copies them to
    the GPU (forward, and again for attribution's backward). Rough: passes = forwards ÷ batch."""
    passes = 0.0
    for row in plan.stages.itertuples():
        batch = sequences_per_pass(row.stage, plan.workload, plan.workload.batch_size)
        passes += row.forwards / max(1, batch)
    return passes * offloaded_gb / OFFLOAD_GB_PER_S


def advice(plan: Plan, per_sequence: dict) -> list[str]:
    """What to change, most important first; the last line names the knob of the slowest stage."""
    w, d, out = plan.workload, plan.device, []
    if d.kind == "cuda" and w.placement == "cpu":
        out.append("the params say device: cpu; on this machine set device: auto (all GPUs) or cuda (one GPU)")
    smallest_fit = min(plan.largest_batch.values())
    if not plan.fits:
        spread = {s: largest_batch_size(s, plan.usable_all_gb - plan.weights_gb, per_sequence[s], w) for s in STAGES}
        if smallest_fit:
            out.append(f"lower batch_size to {smallest_fit} (the largest that fits every stage)")
        elif d.kind == "cuda" and w.placement == "single" and d.count > 1 and min(spread.values()):
            out.append(f"set device: auto so accelerate spreads the layers over the {d.count} GPUs "
                       f"({plan.usable_all_gb:.0f} GB usable instead of {plan.usable_gb:.0f} GB on one), with "
                       f"batch_size ≤ {min(spread.values())}")
        else:
            out.extend(_too_big_advice(plan))
    if w.dtype == "float32":
        out.append(f"dtype: bfloat16 halves the weights to {plan.weights_gb / 2:.1f} GB"
                   + (" and uses the GPU's tensor cores" if d.kind == "cuda" else
                      " (on a CPU without bf16 instructions it can be slower: measure first)"))
    if w.dtype == "float16" and d.kind == "cpu":
        out.append("float16 matrix products are slow on most CPUs: use float32 (or bfloat16) there")
    one_gpu = largest_batch_size("attribution", d.memory_gb * USABLE_FRACTION - plan.weights_gb,
                                 per_sequence["attribution"], w)
    if d.kind == "cuda" and d.count > 1 and one_gpu >= w.batch_size and plan.fits:
        out.append("it fits on one GPU: device: cuda leaves the others free for another run "
                   "(device: auto would not make this one faster)")
    if plan.fits and d.kind == "cuda" and w.batch_size < smallest_fit // 2:
        out.append(f"batch_size up to {smallest_fit} fits; larger batches use the GPU better")
    out.append(_time_advice(plan))
    return out


def _too_big_advice(plan: Plan) -> list[str]:
    w, d = plan.workload, plan.device
    needed = " or ".join(f"{n} × {size}" for size, n in plan.gpus_needed.items())
    here = "this RAM" if d.kind == "cpu" else f"{d.count} × {d.name}"
    out = [f"{plan.weights_gb:.0f} GB of {w.dtype} weights and one attribution pass do not fit in the "
           f"{plan.usable_all_gb:.0f} GB usable on {here}: use {needed} GPUs with device: auto"]
    if d.kind == "cuda":
        offloaded = max(0.0, plan.weights_gb - plan.usable_all_gb) + 0.1 * plan.weights_gb  # room for activations
        hours = offload_seconds(plan, offloaded) / 3600
        out.append(f"or keep these GPUs with device: auto and CPU offload of ~{offloaded:.0f} GB (needs that much "
                   f"free RAM): every pass copies it over PCIe (assumed {OFFLOAD_GB_PER_S:g} GB/s), adding "
                   f"roughly {hours:,.1f} h")
    return out


def _time_advice(plan: Plan) -> str:
    slowest = plan.stages.loc[plan.stages.seconds.idxmax()]
    knob = {"evaluation": "n_items (or tasks) scales it",
            "attribution": "attribution_items caps it (items per task)",
            "ablation": "it grows with passing tasks² × ablation_items: halve ablation_items to halve it"}
    return (f"{slowest.stage} takes {slowest.seconds / plan.total_seconds:.0%} of the time: "
            f"{knob[slowest.stage]}")


def assumptions(plan: Plan) -> list[str]:
    g, w, d = plan.geometry, plan.workload, plan.device
    out = [
        f"time = FLOPs of estimate_cost (2 × {format_count(g.n_flop_params)} non-embedding parameters per token, "
        f"{w.tokens_mean} tokens per sequence; forward passes per unit: "
        + ", ".join(f"{stage} {n:g}" for stage, n in FORWARDS_PER_UNIT.items()) + ") "
        "÷ achieved throughput; excludes downloading and loading the weights",
        f"throughput: {d.throughput_source}",
        f"memory: {w.dtype} weights ({w.bytes_per_param} bytes/parameter) + per pass the activations of sequences "
        f"of {w.tokens_max} tokens (the longest in the committed runs): attribution keeps "
        "12·d_model + 3·d_ff values per token and layer (estimate_cost), evaluation and ablation about two "
        f"layers' worth; {USABLE_FRACTION:.0%} of each device's memory is usable",
        ("passing tasks: all " + str(w.n_passing) + " (unknown before evaluation; an upper bound, set --passing)")
        if w.passing_assumed else f"passing tasks: {w.n_passing} (given)",
        "evaluation counts every item (stop_early scores fewer of the failing tasks); attribution_items / "
        "ablation_items of 0 (all both-correct items) count as n_items",
    ]
    if d.kind == "cuda" and d.count > 1:
        out.append("device: auto places whole layers on GPUs and runs them in turn: memory adds up, speed does not")
    if d.kind == "cpu" and w.dtype != "float32":
        out.append(f"the CPU throughput was measured in float32; {w.dtype} is assumed to run at the same rate")
    return out


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h``, ``2.1 d``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _batch_text(value: int) -> str:
    return f"≥{BATCH_CAP}" if value >= BATCH_CAP else str(value)


def format_plan(plan: Plan, source: str = "") -> str:
    """The plan as the text ``modularity plan`` prints."""
    g, w, d = plan.geometry, plan.workload, plan.device
    head = "untied output head" if not g.tied else "tied output head"
    kind = g.family + (f" ({g.model_type})" if g.model_type != g.family else "")
    placement = {"cpu": "device: cpu", "single": "device: cuda (one GPU)", "auto": "device: auto"}[w.placement]
    where = "detected here" if d.detected else "from the flags"
    lines = [
        f"Plan for {plan.model}" + (f" ({source})" if source else ""),
        f"Model:   {kind}, {g.n_layers} layers, d_model {g.d_model}, "
        + (f"{g.n_experts} experts × {g.d_expert} neurons per layer (" if g.n_experts else f"d_ff {g.d_ff} (")
        + f"{g.n_neurons:,} units), {g.n_heads} heads ({g.n_kv_heads} KV, head_dim {g.head_dim}), "
        f"vocab {g.vocab:,}, {head}",
        f"Params:  {format_count(g.n_params)} computed from the config "
        f"({format_count(g.n_flop_params)} outside embeddings)",
        f"Run:     {w.n_tasks} tasks × {w.n_items} items, {w.n_passing} passing, attribution {w.attribution_items} "
        f"items/task, ablation {w.ablation_items} items/target; {w.dtype}, batch_size {w.batch_size}, {placement}",
        f"Device:  {_device_text(d)}, {where}; {plan.usable_gb:.0f} GB usable by this placement",
        "",
        _stage_table(plan),
        "  overlap, statistics: CPU only, seconds to minutes; they grow with neurons × tasks, not with FLOPs",
        *([f"  with {d.count} processes sharing the run, one GPU each (accelerate launch --multi_gpu "
           f"--num_processes {d.count}, or --shard i/{d.count}): about "
           f"{format_duration(plan.seconds_with_processes(d.count))} in all"]
          if d.kind == "cuda" and d.count > 1 and plan.weights_gb <= d.memory_gb * USABLE_FRACTION else []),
        "",
        f"Weights: {plan.weights_gb:.1f} GB in {w.dtype}: " + _fit_sentence(plan),
        "Largest batch_size that fits: " + ", ".join(f"{s} {_batch_text(b)}" for s, b in plan.largest_batch.items())
        + f" (params: {w.batch_size})",
        "GPUs needed (device: auto, weights + one attribution pass): "
        + " or ".join(f"{n} × {size}" for size, n in plan.gpus_needed.items()),
        "",
        "What to change:" if plan.advice else "",
        *[f"  - {line}" for line in plan.advice],
        "",
        "Assumptions (estimates, not measurements):",
        *[f"  - {line}" for line in plan.assumptions],
    ]
    return "\n".join(lines).replace("\n\n\n", "\n\n")


def _stage_table(plan: Plan) -> str:
    rows = [("stage", "work units", "TFLOP", "memory GB", "fits", "time")]
    for row in plan.stages.itertuples():
        rows.append((row.stage, f"{row.units:,}", f"{row.tflop:,.0f}", f"{row.memory_gb:,.1f}",
                     "yes" if row.fits else "NO", format_duration(row.seconds)))
    rows.append(("total", "", f"{plan.stages.tflop.sum():,.0f}", f"{plan.stages.memory_gb.max():,.1f}",
                 "yes" if plan.fits else "NO", format_duration(plan.total_seconds)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                       for i, (cell, w) in enumerate(zip(r, widths))) for r in rows)


def format_count(n: float) -> str:
    """``134.5 M``, ``70.55 B``."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _device_text(d: DeviceSpec) -> str:
    if d.kind == "cpu":
        return f"{d.name}, {d.memory_gb:.0f} GB RAM"
    return f"{d.count} × {d.name} with {d.memory_gb:.1f} GB ({d.memory_gb * GB / 2**30:.0f} GiB) each"


def _fit_sentence(plan: Plan) -> str:
    d, w = plan.device, plan.workload
    if d.kind == "cpu":
        return "fit in this RAM" if plan.weights_gb <= plan.usable_gb else "do NOT fit in the RAM"
    one = d.memory_gb * USABLE_FRACTION
    fits_one = plan.weights_gb <= one
    fits_all = plan.weights_gb <= plan.usable_all_gb
    if fits_one:
        return f"fit on one {d.name}" + ("" if w.placement == "single" or d.count == 1 else
                                         f" (device: auto still spreads them over {d.count})")
    if fits_all:
        return (f"do not fit on one {d.name}; fit on {d.count} with device: auto"
                + ("" if w.placement == "auto" else " (the params say one GPU)"))
    return f"do NOT fit on {d.count} × {d.name}"
