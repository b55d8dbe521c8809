"""One evaluation answered as one batched rollout against one rollout per part, side by side.

A run of the experiment's arm (default ``experiments/comparison.yaml`` on the builtin base, seed 0, one
torch thread) is assembled and trained whole by the runner (``experiments.run.execute``, no MLflow);
then its final policy is evaluated ``--repeats`` times each way, alternating, without the answer cache
(``--at-start``: the untouched policy of the assembled run instead, no training, as at evaluation 0):
``Evaluator.parts_together`` on (every part's questions in one rollout) and off (one rollout per part).
Reports the median seconds per evaluation each way, their ratio, and whether the metrics were equal
(wall time and memory left out). ``experiments.evaluation.PARTS_TOGETHER_MAX_PARAMETERS`` decides which
way a run takes; this is the measurement behind it.

    python benchmarks/eval_batching.py --arms full_ft:grpo adapter:grpo --repeats 7 \
        --out benchmarks/results/eval_batching.json
    python benchmarks/eval_batching.py --backbone smollm2 --arms adapter:grpo --repeats 2 \
        --set budget.feedback_events=16 --out benchmarks/results/eval_batching_smollm2.json
    python benchmarks/eval_batching.py --backbone smollm2 --arms adapter:grpo --repeats 2 --at-start \
        --out benchmarks/results/eval_batching_smollm2_start.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import eval_share

from experiments import evaluation
from experiments.metrics import measures_the_machine
from experiments.run import assemble, execute


def _final_parts(config):
    """Run ``config`` whole and keep its evaluator and paradigm (the policy after the last event)."""
    kept = {}
    evaluate = evaluation.Evaluator.evaluate

    def keep(self, paradigm, stream_phase=None):
        kept["evaluator"], kept["paradigm"], kept["phase"] = self, paradigm, stream_phase
        return evaluate(self, paradigm, stream_phase)

    evaluation.Evaluator.evaluate = keep
    try:
        execute(config, None, progress=False)
    finally:
        evaluation.Evaluator.evaluate = evaluate
    return kept["evaluator"], kept["paradigm"], kept["phase"]


def measure(config, repeats: int, at_start: bool = False) -> dict:
    if at_start:
        parts = assemble(config, progress=False)
        evaluator, paradigm, phase = parts.evaluator, parts.paradigm, None
    else:
        evaluator, paradigm, phase = _final_parts(config)
    evaluator.session.answers = None
    seconds = {True: [], False: []}
    metrics: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(repeats):
        for together in (False, True):
            evaluator.parts_together = together
            started = time.perf_counter()
            result = evaluator.evaluate(paradigm, phase)
            seconds[together].append(time.perf_counter() - started)
            metrics[together].append({k: v for k, v in result.items() if not measures_the_machine(k)})
    per_part, together = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "arm": eval_share.arm_name(config),
        "backbone": config.backbone,
        "feedback_events": 0 if at_start else config.budget.feedback_events,
        "seconds_per_part": seconds[False],
        "seconds_together": seconds[True],
        "median_seconds_per_part": per_part,
        "median_seconds_together": together,
        "together_over_per_part": together / per_part,
        "same_metrics": metrics[True] == metrics[False],  # at every repeat
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    eval_share.add_run_arguments(parser, ("full_ft:grpo", "adapter:grpo"), repeats=7)
    parser.add_argument("--at-start", action="store_true", help="evaluate the untouched policy (no training)")
    args = parser.parse_args()
    eval_share.run_arms(
        args, "eval_batching", lambda config: measure(config, args.repeats, args.at_start), report
    )


def report(row: dict) -> None:
    print(
        f"{row['arm']:14s} per part {row['median_seconds_per_part']:7.2f}s "
        f"together {row['median_seconds_together']:7.2f}s "
        f"ratio {row['together_over_per_part']:.2f} same metrics {row['same_metrics']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
