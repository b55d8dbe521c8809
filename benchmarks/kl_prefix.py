"""``eval/kl_to_base`` with the prompts' shared prefix read once, against one full pass, side by side.

A run of the experiment's arm (default ``experiments/comparison.yaml`` on the builtin base, seed 0, one
torch thread) is trained whole by the runner (``experiments.run.execute``, no MLflow); the episodes its
last evaluation measured the KL on (the personal items' answers) are kept with its policy and
reference. Then ``experiments.evaluation.kl_to_reference`` runs ``--repeats`` times each way,
alternating: with the prefix all rows share read once (every row continues from its keys and values),
with no shared prefix (one full pass per model, what it did before), and as the evaluator runs it (the
former when the prefix is long enough, ``paradigms.shared_prefix.MIN_FRACTION``).
Reports the median seconds each way, the ratios to the full pass, the KL values and the relative
difference of the first two, the batch width and the shared prefix's length.

    python benchmarks/kl_prefix.py --arms full_ft:grpo adapter:grpo --repeats 5 \
        --out benchmarks/results/kl_prefix.json
    python benchmarks/kl_prefix.py --backbone smollm2 --arms adapter:grpo --repeats 3 \
        --set budget.feedback_events=8 --set evaluation.every=8 \
        --out benchmarks/results/kl_prefix_smollm2.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import eval_share

from experiments import evaluation
from experiments.run import execute
from paradigms import shared_prefix


def _last_kl_inputs(config) -> tuple:
    """Run ``config`` whole; the arguments of the last evaluation's ``kl_to_reference`` call."""
    kept = {}
    kl = evaluation.kl_to_reference

    def keep(model, reference, tokenizer, episodes, **kwargs):
        kept["arguments"] = (model, reference, tokenizer, list(episodes))
        return kl(model, reference, tokenizer, episodes, **kwargs)

    evaluation.kl_to_reference = keep
    try:
        execute(config, None, progress=False)
    finally:
        evaluation.kl_to_reference = kl
    if "arguments" not in kept:
        raise SystemExit(f"{eval_share.arm_name(config)}: its evaluations measure no KL (weights never move)")
    return kept["arguments"]


def _prefix_and_width(tokenizer, episodes) -> tuple[int, int]:
    """The batch's width and how many leading tokens all its sequences share (within the prompts)."""
    sequences = [e.prompt_ids + e.completion_ids for e in episodes]
    shortest_prompt = min(len(e.prompt_ids) for e in episodes)
    return max(map(len, sequences)), min(shared_prefix.length(sequences), shortest_prompt)


WAYS = ("full_pass", "prefix_once", "evaluator")


def measure(config, repeats: int) -> dict:
    """``full_pass``: no shared prefix; ``prefix_once``: the shared prefix read once whatever its length;
    ``evaluator``: as ``kl_to_reference`` decides (:data:`shared_prefix.MIN_FRACTION`)."""
    model, reference, tokenizer, episodes = _last_kl_inputs(config)
    fraction = shared_prefix.MIN_FRACTION
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    values: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way in WAYS:
            if way == "full_pass":
                shared_prefix.MIN_FRACTION = float("inf")  # no prefix is long enough
            elif way == "prefix_once":
                shared_prefix.MIN_FRACTION = 0.0
            started = time.perf_counter()
            try:
                value = evaluation.kl_to_reference(model, reference, tokenizer, episodes)
            finally:
                shared_prefix.MIN_FRACTION = fraction
            seconds[way].append(time.perf_counter() - started)
            values[way].append(value)
    median = {way: statistics.median(seconds[way]) for way in WAYS}
    width, shared = _prefix_and_width(tokenizer, episodes)
    kl_once, kl_full = values["prefix_once"][0], values["full_pass"][0]
    return {
        "arm": eval_share.arm_name(config),
        "backbone": config.backbone,
        "feedback_events": config.budget.feedback_events,
        "episodes": len(episodes),
        "width": width,
        "shared_prefix": shared,
        "min_fraction": fraction,
        **{f"seconds_{way}": seconds[way] for way in WAYS},
        **{f"median_seconds_{way}": median[way] for way in WAYS},
        "prefix_once_over_full_pass": median["prefix_once"] / median["full_pass"],
        "evaluator_over_full_pass": median["evaluator"] / median["full_pass"],
        **{f"kl_{way}": values[way] for way in WAYS},
        "kl_relative_difference": abs(kl_once - kl_full) / abs(kl_full) if kl_full else abs(kl_once),
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    eval_share.add_run_arguments(parser, ("full_ft:grpo", "adapter:grpo"), repeats=5)
    args = parser.parse_args()
    eval_share.run_arms(args, "kl_prefix", lambda config: measure(config, args.repeats), report)


def report(row: dict) -> None:
    print(
        f"{row['arm']:14s} width {row['width']} shared {row['shared_prefix']} "
        f"full pass {row['median_seconds_full_pass']:7.3f}s "
        f"prefix once {row['median_seconds_prefix_once']:7.3f}s "
        f"ratio {row['prefix_once_over_full_pass']:.2f} "
        f"evaluator's {row['evaluator_over_full_pass']:.2f} "
        f"KL relative difference {row['kl_relative_difference']:.1e}",
        flush=True,
    )


if __name__ == "__main__":
    main()
