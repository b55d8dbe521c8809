"""Metric names (the contracts of DESIGN.md) and their directions, in one place."""

from __future__ import annotations

HIGHER, LOWER = "higher", "lower"

PERSONAL_ACCURACY = "eval/personal_accuracy"
#: The personal-accuracy curve's mean so far: its normalized trapezoid area from event 0 to this
#: evaluation (at event 0, the accuracy itself); the final value is the run's sample efficiency,
#: the criterion harness tune maximizes.
PERSONAL_ACCURACY_AUC = "eval/personal_accuracy_auc"
GENERAL_ACCURACY = "eval/general_accuracy"
#: The untouched base's general-probe accuracy, measured once per run before training (no notes,
#: no tool policy) and logged with every evaluation (``base - general``: the instructed probe's drop).
BASE_GENERAL_ACCURACY = "eval/base_general_accuracy"
#: World knowledge: the share of the knowledge probe (``tasks.probes.knowledge_probe``: world facts no
#: stream ever asks about, asked plainly, no tool) answered with the right value, whatever the format.
GENERAL_KNOWLEDGE = "eval/general_knowledge"
#: The untouched base's ``eval/general_knowledge``, measured once per run before training.
BASE_GENERAL_KNOWLEDGE = "eval/base_general_knowledge"
#: Knowledge forgetting: ``eval/base_general_knowledge - eval/general_knowledge`` (signed: a gain is
#: negative), Biderman et al. 2024's forgetting (``analysis.stats.forgetting``), independent of the
#: evaluation schedule. Until this probe existed it was measured on ``eval/general_accuracy``, which
#: also counts the format (README: "Forgetting").
FORGETTING = "eval/forgetting"
#: Paradigms that place notes in the prompt (memory, hybrid, oracle): the probes answered by the same
#: model without them, so a report can tell the notes' share of the forgetting.
GENERAL_ACCURACY_WITHOUT_NOTES = "eval/general_accuracy_without_notes"
GENERAL_KNOWLEDGE_WITHOUT_NOTES = "eval/general_knowledge_without_notes"
FORMAT_COMPLIANCE = "eval/format_compliance"
#: The share of the suite's own questions with an explicit format request other than the user's habit
#: (``Suite.instruction_eval``) answered in the requested format (the value is not scored).
INSTRUCTION_FOLLOWING = "eval/instruction_following"
#: The untouched base's ``eval/instruction_following``, measured once per run before training.
BASE_INSTRUCTION_FOLLOWING = "eval/base_instruction_following"
#: Instruction override: ``eval/base_instruction_following - eval/instruction_following`` (signed), how
#: much a learned habit or a note placed in the prompt overrides an explicit request.
INSTRUCTION_FORGETTING = "eval/instruction_forgetting"
SEARCH_CALLS_PER_QUERY = "eval/search_calls_per_query"
#: Logged only for paradigms whose weights can differ from the base (those that train with an algorithm).
KL_TO_BASE = "eval/kl_to_base"
#: Drift suites: accuracy on phase i's items that the user never changes later in the run (so every
#: row of the drift matrix scores the same items, each against a truth that still holds).
PHASE_ACCURACY = "eval/phase_accuracy/{phase}"
#: Drift suites, from the first evaluation after a change: accuracy on the items the user has changed
#: so far, against their new value (does the agent update?), in the world of the stream's phase.
UPDATING_ACCURACY = "eval/updating_accuracy"
#: Drift suites: the phase the stream was in when the feedback events last consumed before an
#: evaluation were drawn (absent at step 0). It names the row of the drift matrix R the
#: evaluation fills (analysis/continual.py); a label, not a score, so it has no direction.
STREAM_PHASE = "eval/stream_phase"

TRAIN_REWARD = "train/reward"
TRAIN_REWARD_COMPONENT = "train/reward/{component}"
TRAIN_SEARCH_CALLS_PER_QUERY = "train/search_calls_per_query"

WALL_SECONDS = "cost/wall_seconds"
#: The compute ledger, one for every paradigm (``paradigms.compute``'s 2 FLOPs per parameter per token
#: forward): ``train_flops`` what learning costs (updates; a memory's reflection and note embeddings),
#: ``inference_flops`` the forward passes that answered the stream (the shared rollout's, with every
#: group sample, plus a memory's retrieval embeddings), ``total_flops`` their sum. Evaluation excluded.
TRAIN_FLOPS = "cost/train_flops"
INFERENCE_FLOPS = "cost/inference_flops"
TOTAL_FLOPS = "cost/total_flops"
#: A memory's parts of the ledger: the reflection model's generation and the notes' embeddings (both in
#: ``train_flops``), and the questions' embeddings for retrieval (in ``inference_flops``); logged by
#: ``paradigms/memory/paradigm.py`` (which imports nothing from ``experiments``; tests check the names).
REFLECTION_FLOPS = "memory/reflection_flops"
NOTE_EMBEDDING_FLOPS = "memory/note_embedding_flops"
RETRIEVAL_EMBEDDING_FLOPS = "memory/retrieval_embedding_flops"
TRAINABLE_PARAMS = "cost/trainable_params"
CONTEXT_TOKENS_PER_QUERY = "cost/context_tokens_per_query"
STORAGE_BYTES = "cost/storage_bytes"
PEAK_RSS_BYTES = "cost/peak_rss_bytes"
#: User questions (stream rows) answered so far: feedback events divided by the group size (a GRPO
#: group of 8 is 8 events for one question). The second x-axis of learning curves (README).
USER_QUESTIONS = "cost/user_questions"
GENERATED_TOKENS = "cost/generated_tokens"
PROMPT_TOKENS = "cost/prompt_tokens"
#: Wall seconds inside the shared rollout so far (answering, learning's samples, evaluations).
GENERATION_SECONDS = "cost/generation_seconds"
#: Wall seconds spent evaluating so far (the evaluations' own rollouts included).
EVALUATION_SECONDS = "cost/evaluation_seconds"
#: Wall seconds training stood still for evaluations so far: ``evaluation_seconds`` when every evaluation
#: runs in place; less when a forked copy evaluates beside training (``evaluation.background``).
EVALUATION_WAIT_SECONDS = "cost/evaluation_wait_seconds"

# the continual-learning terms of each update (paradigms/rl/continual.py), before their weights
TRAIN_LOSS_REPLAY = "train/loss/replay"
TRAIN_LOSS_REGULARIZER = "train/loss/regularizer"
TRAIN_LOSS_DISTILL = "train/loss/distill"

# the learned tool policy (paradigms/tool_policy.py), logged after every batch it learns from
POLICY_EPSILON = "policy/epsilon"
POLICY_Q_SEARCH = "policy/q_search"
POLICY_Q_ANSWER = "policy/q_answer"
POLICY_SEARCH_RATE = "policy/search_rate"
POLICY_DEFER_RATE = "policy/defer_rate"
POLICY_STATES = "policy/states"

# meta-training of an adapter start (harness meta-train, a kind=meta run), step = meta feedback events
META_LR = "meta/meta_lr"
META_INNER_REWARD_FIRST = "meta/inner_reward_first"
META_INNER_REWARD_LAST = "meta/inner_reward_last"
META_INNER_FORMAT_LAST = "meta/inner_format_last"
META_STEP_NORM = "meta/step_norm"

#: Direction of every fixed metric name: is a higher value better or worse?
DIRECTIONS: dict[str, str] = {
    PERSONAL_ACCURACY: HIGHER,
    PERSONAL_ACCURACY_AUC: HIGHER,
    GENERAL_ACCURACY: HIGHER,
    BASE_GENERAL_ACCURACY: HIGHER,
    GENERAL_KNOWLEDGE: HIGHER,
    BASE_GENERAL_KNOWLEDGE: HIGHER,
    FORGETTING: LOWER,
    GENERAL_ACCURACY_WITHOUT_NOTES: HIGHER,
    GENERAL_KNOWLEDGE_WITHOUT_NOTES: HIGHER,
    FORMAT_COMPLIANCE: HIGHER,
    INSTRUCTION_FOLLOWING: HIGHER,
    BASE_INSTRUCTION_FOLLOWING: HIGHER,
    INSTRUCTION_FORGETTING: LOWER,
    SEARCH_CALLS_PER_QUERY: LOWER,
    KL_TO_BASE: LOWER,
    UPDATING_ACCURACY: HIGHER,
    TRAIN_REWARD: HIGHER,
    TRAIN_SEARCH_CALLS_PER_QUERY: LOWER,
    WALL_SECONDS: LOWER,
    TRAIN_FLOPS: LOWER,
    INFERENCE_FLOPS: LOWER,
    TOTAL_FLOPS: LOWER,
    REFLECTION_FLOPS: LOWER,
    NOTE_EMBEDDING_FLOPS: LOWER,
    RETRIEVAL_EMBEDDING_FLOPS: LOWER,
    TRAINABLE_PARAMS: LOWER,
    CONTEXT_TOKENS_PER_QUERY: LOWER,
    STORAGE_BYTES: LOWER,
    PEAK_RSS_BYTES: LOWER,
    USER_QUESTIONS: LOWER,
    GENERATED_TOKENS: LOWER,
    PROMPT_TOKENS: LOWER,
    GENERATION_SECONDS: LOWER,
    EVALUATION_SECONDS: LOWER,
    EVALUATION_WAIT_SECONDS: LOWER,
    TRAIN_LOSS_REPLAY: LOWER,
    TRAIN_LOSS_REGULARIZER: LOWER,
    TRAIN_LOSS_DISTILL: LOWER,
    POLICY_EPSILON: LOWER,
    POLICY_Q_SEARCH: HIGHER,
    POLICY_Q_ANSWER: HIGHER,
    POLICY_SEARCH_RATE: LOWER,
    POLICY_DEFER_RATE: LOWER,
    POLICY_STATES: HIGHER,
    META_LR: LOWER,
    META_INNER_REWARD_FIRST: HIGHER,
    META_INNER_REWARD_LAST: HIGHER,
    META_INNER_FORMAT_LAST: HIGHER,
    META_STEP_NORM: LOWER,
}


def direction(metric: str) -> str:
    """``higher`` or ``lower`` for a metric name, templated names included."""
    if metric.startswith("eval/phase_accuracy/"):
        return HIGHER
    if metric.startswith("train/reward/"):
        return HIGHER
    if metric not in DIRECTIONS:
        raise KeyError(f"no direction known for metric {metric!r}; add it to experiments/metrics.py")
    return DIRECTIONS[metric]


#: Words of the metric names that measure the machine, not the run: time (``cost/wall_seconds``), memory
#: (``cost/peak_rss_bytes``) and a memory's retrieval latency. Another machine, load or thread count logs
#: other values of them for the same answers, so a check that a re-run logs the same results leaves them out.
MACHINE_WORDS = ("seconds", "rss", "latency")


def measures_the_machine(metric: str) -> bool:
    """Whether ``metric`` measures the machine's speed or memory rather than what the run answered."""
    return any(word in metric for word in MACHINE_WORDS)
