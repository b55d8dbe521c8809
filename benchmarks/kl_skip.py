"""What ``eval/kl_to_base`` costs when the policy computes exactly as the base: the check against the passes.

``experiments.evaluation.kl_to_reference`` first asks ``computes_as_reference`` whether the policy and the
reference compute the same function: ``paradigms.answer_cache.same_computation`` (byte-equal weights,
configuration, modules and modes: a ``full_ft`` run's first evaluation), else
``paradigms.lora_identity.adds_nothing_to`` (a LoRA wrapper of the reference whose ``lora_B`` is still all
zeros: an ``adapter`` or ``hybrid`` run's first evaluation). When they do, the KL is exactly 0.0 and no
forward pass runs. A run of each selected arm (default ``experiments/comparison.yaml`` on the builtin
base, seed 0, one torch thread) is executed whole by the runner (``experiments.run.execute``, no MLflow);
at every evaluation, with the models as they are then, the check and the KL's forward passes
(``experiments.evaluation._mean_kl``, what ran before the check existed) are each timed ``--repeats``
times, alternating. Reports per evaluation: whether the check found them equal, the median seconds of the
check and of the passes, the KL the passes give, and the run's total of each (what the check saves where
it says equal, and costs where it does not).

    python benchmarks/kl_skip.py --arms full_ft:grpo adapter:grpo hybrid:grpo --repeats 5 \
        --out benchmarks/results/kl_skip.json
    python benchmarks/kl_skip.py --backbone smollm2 --arms full_ft:grpo adapter:grpo hybrid:grpo \
        --repeats 3 --set budget.feedback_events=8 --set evaluation.every=8 \
        --out benchmarks/results/kl_skip_smollm2.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import eval_share

from experiments import evaluation
from experiments.run import execute
from paradigms.agent import evaluation_mode


def _timed(function) -> tuple[float, object]:
    """``function()``'s wall seconds and value."""
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def measure(config, repeats: int) -> dict:
    """Run ``config`` whole, timing the check and the passes at each of its evaluations' KL calls."""
    evaluations = []
    kl = evaluation.kl_to_reference

    def timed_kl(model, reference, tokenizer, episodes, batch_size: int = 64):
        check, passes, value, equal = [], [], None, None
        with evaluation_mode(model, reference):
            for _ in range(repeats):  # alternating: the check, then the passes
                seconds, equal = _timed(lambda: evaluation.computes_as_reference(model, reference))
                check.append(seconds)
                seconds, value = _timed(
                    lambda: evaluation._mean_kl(model, reference, tokenizer, episodes, batch_size)
                )
                passes.append(seconds)
        evaluations.append(
            {
                "computes_as_reference": equal,
                "seconds_check": check,
                "seconds_passes": passes,
                "median_seconds_check": statistics.median(check),
                "median_seconds_passes": statistics.median(passes),
                "kl_from_passes": value,
            }
        )
        return kl(model, reference, tokenizer, episodes, batch_size=batch_size)

    evaluation.kl_to_reference = timed_kl
    try:
        final = execute(config, None, progress=False)
    finally:
        evaluation.kl_to_reference = kl
    if not evaluations:
        raise SystemExit(f"{eval_share.arm_name(config)}: its evaluations measure no KL (weights never move)")
    saved = sum(e["median_seconds_passes"] for e in evaluations if e["computes_as_reference"])
    checks = sum(e["median_seconds_check"] for e in evaluations)
    return {
        "arm": eval_share.arm_name(config),
        "backbone": config.backbone,
        "feedback_events": config.budget.feedback_events,
        "every": config.evaluation.every,
        "evaluations": evaluations,
        "passes_skipped": sum(bool(e["computes_as_reference"]) for e in evaluations),
        "seconds_passes_skipped": saved,
        "seconds_checks": checks,
        "seconds_passes_all": sum(e["median_seconds_passes"] for e in evaluations),
        "final_kl_to_base": final.get("eval/kl_to_base"),
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    eval_share.add_run_arguments(parser, ("full_ft:grpo", "adapter:grpo"), repeats=5)
    args = parser.parse_args()
    eval_share.run_arms(args, "kl_skip", lambda config: measure(config, args.repeats), report)


def report(row: dict) -> None:
    for number, e in enumerate(row["evaluations"]):
        print(
            f"{row['arm']:14s} evaluation {number}: computes as the base {e['computes_as_reference']!s:5s} "
            f"check {e['median_seconds_check']:8.4f}s passes {e['median_seconds_passes']:8.3f}s "
            f"KL {e['kl_from_passes']:.3g}",
            flush=True,
        )
    print(
        f"{row['arm']:14s} skipped {row['passes_skipped']} of {len(row['evaluations'])}: "
        f"{row['seconds_passes_skipped']:.2f}s of passes saved, {row['seconds_checks']:.3f}s of checks",
        flush=True,
    )


if __name__ == "__main__":
    main()
