"""The MLflow names the analysis reads: metric names, their directions, tags and tidy-table columns.

Metric names and directions come from ``experiments/metrics.py``, the one module that declares
them (a pure module: importing it pulls in neither torch nor a paradigm). The tags, prefixes and
orderings below are the analysis's own.
"""

from __future__ import annotations

from experiments.metrics import (  # noqa: F401  (re-exported for the analysis modules)
    BASE_GENERAL_ACCURACY,
    BASE_GENERAL_KNOWLEDGE,
    CONTEXT_TOKENS_PER_QUERY,
    DIRECTIONS,
    FORGETTING,
    FORMAT_COMPLIANCE,
    GENERAL_ACCURACY,
    GENERAL_ACCURACY_WITHOUT_NOTES,
    GENERAL_KNOWLEDGE,
    GENERAL_KNOWLEDGE_WITHOUT_NOTES,
    GENERATED_TOKENS,
    HIGHER,
    INFERENCE_FLOPS,
    INSTRUCTION_FOLLOWING,
    INSTRUCTION_FORGETTING,
    KL_TO_BASE,
    LOWER,
    NOTE_EMBEDDING_FLOPS,
    PEAK_RSS_BYTES,
    PERSONAL_ACCURACY,
    PHASE_ACCURACY,
    PROMPT_TOKENS,
    REFLECTION_FLOPS,
    RETRIEVAL_EMBEDDING_FLOPS,
    SEARCH_CALLS_PER_QUERY,
    STORAGE_BYTES,
    STREAM_PHASE,
    TOTAL_FLOPS,
    TRAIN_FLOPS,
    TRAIN_REWARD,
    TRAIN_REWARD_COMPONENT,
    TRAINABLE_PARAMS,
    UPDATING_ACCURACY,
    USER_QUESTIONS,
    WALL_SECONDS,
)

PHASE_ACCURACY_PREFIX = PHASE_ACCURACY.format(phase="")
TRAIN_REWARD_PREFIX = TRAIN_REWARD_COMPONENT.format(component="")
#: The builtin reward components, in the order figures stack them (``train/reward/<component>``); a
#: display order only: figures show every component found logged (these first, then by name), and
#: the components themselves are registered in tasks/rewards.py (tests check these names are there).
REWARD_COMPONENTS = ("correctness", "format", "tool_efficiency", "search_cost")

#: The contract tags every child run carries, each a column of the tidy table.
CONTRACT_TAGS = ("paradigm", "algorithm", "task", "seed", "config_hash", "backbone")
#: Optional tags of sweep trials (empty when absent).
SWEEP_TAGS = ("sweep", "trial")
ERROR_TAG = "error"
KIND_TAG = "kind"
PARAM_PREFIX = "param."

#: Paradigms in the order every table and figure lists them; later registrations follow by name.
PARADIGM_ORDER = ("frozen", "memory", "full_ft", "adapter", "oracle")
FINISHED = "FINISHED"


def phase_metric(phase: int) -> str:
    """``eval/phase_accuracy/<phase>``."""
    return f"{PHASE_ACCURACY_PREFIX}{phase}"


def reward_metric(component: str) -> str:
    """``train/reward/<component>``."""
    return f"{TRAIN_REWARD_PREFIX}{component}"


def paradigm_rank(paradigm: str) -> tuple[int, str]:
    """Sort key putting the known paradigms in :data:`PARADIGM_ORDER`, then any other by name."""
    if paradigm in PARADIGM_ORDER:
        return PARADIGM_ORDER.index(paradigm), ""
    return len(PARADIGM_ORDER), str(paradigm)
