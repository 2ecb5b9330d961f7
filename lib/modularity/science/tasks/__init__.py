"""The 46-task minimal-pair suite: seeded generators, the study's file layout, checks.

>>> from modularity.science.tasks import generate_task, TASK_NAMES
>>> task = generate_task("code_list", profile="small", n_items=10, seed=0)
>>> task.label, len(task)
('MD/code_list', 10)
"""
from .base import PROFILES, MinimalPair, TaskSpec
from .number_words import number_to_words
from .reports import alignment_rate, copy_solvable_share, diversity_report, label_balance, option_first_share, prompt_tail
from .schema import CONDITIONS, DOMAIN_NAMES, DOMAINS, REQUIRED_KEYS, ItemSource, PromptConfig, TaskData, assemble_message, format_prompt
from .study_io import EXCLUSION_REASONS, TaskDataError, audit_items, classify_items, excluded_items_lines, export_study_layout, item_sources, load_study_data, source_table, subsample_suite, validate_items
from .catalog import SPECS, TASK_DOMAINS, TASK_NAMES, check_task_names, describe_tasks, task_seed
from .suite import generate_suite, generate_task, load_suite
from .frames import FRAMES, reframe, split_variant

__all__ = [
    "CONDITIONS", "DOMAIN_NAMES", "DOMAINS", "EXCLUSION_REASONS", "PROFILES", "REQUIRED_KEYS", "SPECS",
    "TASK_DOMAINS", "TASK_NAMES", "alignment_rate", "assemble_message", "audit_items", "check_task_names",
    "classify_items", "copy_solvable_share", "describe_tasks", "diversity_report", "excluded_items_lines",
    "export_study_layout", "format_prompt",
    "generate_suite", "generate_task", "item_sources", "ItemSource", "label_balance", "load_study_data",
    "load_suite", "MinimalPair", "number_to_words", "option_first_share", "prompt_tail", "PromptConfig",
    "source_table", "subsample_suite", "task_seed", "TaskData", "TaskDataError", "TaskSpec",
    "validate_items", "FRAMES", "reframe", "split_variant",
]
