"""The 46-task minimal-pair suite: seeded generators, the study's file layout, checks.

>>> from modularity.tasks import generate_task, TASK_NAMES
>>> task = generate_task("code_list", profile="small", n_items=10, seed=0)
>>> task.label, len(task)
('MD/code_list', 10)
"""
from .base import PROFILES, MinimalPair, TaskSpec
from .number_words import number_to_words
from .reports import (alignment_rate, chat_formatter, copy_solvable_share, diversity_report, label_balance,
                      option_first_share, prompt_tail)
from .schema import (CONDITIONS, DOMAIN_NAMES, DOMAINS, REQUIRED_KEYS, ItemSource, PromptConfig, TaskData,
                     assemble_message)
from .study_io import (EXCLUSION_REASONS, TaskDataError, audit_items, classify_items, export_study_layout,
                       item_sources, load_study_data, source_table, subsample_suite, validate_items)
from .suite import (SPECS, TASK_DOMAINS, TASK_NAMES, describe_tasks, generate_suite, generate_task, load_suite,
                    task_seed)

__all__ = [
    "CONDITIONS", "DOMAINS", "DOMAIN_NAMES", "EXCLUSION_REASONS", "PROFILES", "REQUIRED_KEYS", "SPECS",
    "TASK_DOMAINS", "TASK_NAMES",
    "ItemSource", "MinimalPair", "PromptConfig", "TaskData", "TaskDataError", "TaskSpec",
    "alignment_rate", "assemble_message", "audit_items", "chat_formatter", "classify_items", "copy_solvable_share",
    "describe_tasks", "diversity_report", "export_study_layout", "generate_suite", "generate_task", "item_sources",
    "label_balance", "load_study_data", "load_suite", "number_to_words", "option_first_share", "prompt_tail", "source_table",
    "subsample_suite", "task_seed", "validate_items",
]
