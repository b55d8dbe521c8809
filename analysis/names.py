"""The MLflow names the analysis reads: metric names, their directions, tags and tidy-table columns.

The metric names mirror ``experiments/metrics.py`` (DESIGN.md's contract). ``analysis`` may not
import ``experiments``, so they are restated here; ``tests/test_analysis.py`` checks that the two
modules agree, so a renamed metric fails a test instead of silently emptying a figure.
"""

from __future__ import annotations

HIGHER, LOWER = "higher", "lower"

PERSONAL_ACCURACY = "eval/personal_accuracy"
GENERAL_ACCURACY = "eval/general_accuracy"
FORGETTING = "eval/forgetting"
FORMAT_COMPLIANCE = "eval/format_compliance"
SEARCH_CALLS_PER_QUERY = "eval/search_calls_per_query"
KL_TO_BASE = "eval/kl_to_base"
PHASE_ACCURACY_PREFIX = "eval/phase_accuracy/"

TRAIN_REWARD = "train/reward"
TRAIN_REWARD_PREFIX = "train/reward/"
#: Reward components, in the order figures stack them (``train/reward/<component>``).
REWARD_COMPONENTS = ("correctness", "format", "tool_efficiency", "search_cost")

WALL_SECONDS = "cost/wall_seconds"
TRAIN_FLOPS = "cost/train_flops"
TRAINABLE_PARAMS = "cost/trainable_params"
CONTEXT_TOKENS_PER_QUERY = "cost/context_tokens_per_query"
STORAGE_BYTES = "cost/storage_bytes"
PEAK_RSS_BYTES = "cost/peak_rss_bytes"
GENERATED_TOKENS = "cost/generated_tokens"
PROMPT_TOKENS = "cost/prompt_tokens"

#: Direction of every metric the analysis ranks by (higher or lower is better).
DIRECTIONS: dict[str, str] = {
    PERSONAL_ACCURACY: HIGHER,
    GENERAL_ACCURACY: HIGHER,
    FORGETTING: LOWER,
    FORMAT_COMPLIANCE: HIGHER,
    SEARCH_CALLS_PER_QUERY: LOWER,
    KL_TO_BASE: LOWER,
    TRAIN_REWARD: HIGHER,
    WALL_SECONDS: LOWER,
    TRAIN_FLOPS: LOWER,
    TRAINABLE_PARAMS: LOWER,
    CONTEXT_TOKENS_PER_QUERY: LOWER,
    STORAGE_BYTES: LOWER,
    PEAK_RSS_BYTES: LOWER,
    GENERATED_TOKENS: LOWER,
    PROMPT_TOKENS: LOWER,
}

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
