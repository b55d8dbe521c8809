"""Where a run's wall time goes: the share spent evaluating, and what an evaluation spends it on.

Each selected run of the experiment file (default: ``experiments/comparison.yaml`` on the builtin base,
``experiments/comparison_smollm2.yaml`` with ``--backbone smollm2``: the schedule those comparisons run
at) is executed whole by the runner (``experiments.run.execute``, no MLflow), seed 0, one torch thread,
with the evaluator's parts timed from outside (its methods wrapped for the length of the run):

- ``wall``: the whole ``execute`` call (loading the backbone, the base's general probe, training,
  every evaluation);
- ``measure_base``: the untouched base's general probe (``Evaluator.measure_base``);
- ``evaluations``: every ``Evaluator.evaluate`` call (at event 0, every ``evaluation.every`` events,
  the end), split into ``answering`` (its one batched rollout of the personal items, the general probe
  with the paradigm's notes and without them, the instruction items, the drift phases' and updated
  items, whatever the answer cache does not serve, and their scoring), the KL to the base, and the rest
  (the paradigm's notes retrieval and tool decisions, its extra metrics, bookkeeping);
- ``evaluation_share``: (``measure_base`` + the seconds training stood still for evaluations) / ``wall``;
  with every evaluation in place (the default here) that is (``measure_base`` + ``evaluations``) / ``wall``.

``--background`` lets a run evaluate in a forked copy beside training, as a
one-thread run does by default (``evaluation.background``, ``experiments/background_evaluation.py``): the
share is then what training waited (``cost/evaluation_wait_seconds``: starting the copies, waiting for one
still answering when the next is due, and the last evaluation), ``evaluation_seconds_logged`` what the
evaluations took wherever they ran (``cost/evaluation_seconds``), and the parts, questions and calls
count the evaluations made in place only (``evaluations_in_copies`` says how many were not, ``copies_forked``
in how many copies: one for a run whose paradigm says its evaluation state, the copy staying and being
sent each evaluation's state).
``peak_pss_with_copies_bytes`` is the most memory the run and its copies held together, sampled every
0.25 s (``benchmarks/process_memory.py``), beside the run's own ``cost/peak_rss_bytes``.

Also counted: the questions each part answered (``evaluation_questions``, every evaluation's, to set
beside the run's ``feedback_events``, each one sampled answer), the part calls, how many of them the
session's answer cache served (``paradigms.answer_cache``), and the rollouts and rows the evaluations
generated; ``--no-answer-cache`` runs
without it (the reference the cache is measured against), ``--both`` each arm both ways. Each run starts
with an empty answer store (a run on its own) unless ``--grid``, where later arms may use what earlier
ones stored, as the runs of one ``harness run`` do. Timings are ratios within one run on a shared
machine: the 1-minute load average at the start and end of each run is kept in the results. ``--every``
runs each arm once per ``evaluation.every`` value given (what the schedule costs against how many
evaluations it makes).

    python benchmarks/eval_share.py --both --out benchmarks/results/eval_share.json
    python benchmarks/eval_share.py --grid --out benchmarks/results/eval_share_grid.json
    python benchmarks/eval_share.py --backbone smollm2 --out benchmarks/results/eval_share_smollm2.json
    python benchmarks/eval_share.py --arms full_ft:grpo adapter:grpo --every 100 200 300 600 --repeats 3 \
        --out benchmarks/results/eval_share_every.json
    python benchmarks/eval_share.py --arms frozen memory full_ft:grpo adapter:grpo --background \
        --set budget.feedback_events=800 --repeats 3 --out benchmarks/results/eval_share_background.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from process_memory import PeakMemory

from experiments import background_evaluation, evaluation
from experiments import metrics as m
from experiments.config import load_experiment
from experiments.run import execute
from paradigms import answer_cache as answer_cache_module
from paradigms import session as session_module

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = {
    "builtin": ROOT / "experiments" / "comparison.yaml",
    "smollm2": ROOT / "experiments" / "comparison_smollm2.yaml",
}
#: paradigm[:algorithm] as the grid names them
DEFAULT_ARMS = ("frozen", "memory", "full_ft:grpo", "adapter:grpo")
#: What an evaluation's time is split into: its one batched rollout of every part's questions the
#: answer cache does not serve, with the scoring (``answering``), the KL to the base, and the rest.
PARTS = ("answering", "kl_to_base", "other")
#: The parts whose questions are counted (each part is one call of the evaluation's batched rollout).
QUESTION_PARTS = (
    "personal",
    "general_probe",
    "general_probe_without_notes",
    "instructions",
    "phases",
    "updating",
)


class Timings:
    """Seconds, questions and rollout calls per evaluation part, accumulated while installed."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.cached: dict[str, int] = defaultdict(int)
        self.questions: dict[str, int] = defaultdict(int)
        self.generated_rows = 0
        self.rollouts = 0
        self.evaluations: list[float] = []
        self.in_copies = 0
        self.forks = 0
        self.measure_base = 0.0

    @staticmethod
    def label(evaluator, calls) -> list[str]:
        """Each call's part, by which of the evaluator's item lists it answers."""
        labels, probes = [], 0
        for call in calls:
            if not call.search:
                probes += 1
                labels.append("general_probe" if probes == 1 else "general_probe_without_notes")
            elif call.items is evaluator.instructions:
                labels.append("instructions")
            elif any(call.items is phase for phase in evaluator.phases):
                labels.append("phases")
            elif any(call.items is updated for updated in evaluator.updated):
                labels.append("updating")
            else:
                labels.append("personal")
        return labels

    @contextmanager
    def installed(self):
        """Wrap the evaluator's parts (class attributes, restored on exit)."""
        cls = evaluation.Evaluator
        saved = (cls.measure_base, cls._answer_all, cls.evaluate, evaluation.kl_to_reference)
        measure_base, answer_all, evaluate, kl = saved
        rollout = session_module.rollout
        timings = self
        state = {"evaluating": False}

        def timed_measure_base(self, model, tokenizer):
            started = time.perf_counter()
            hits = _hits(self.session)
            try:
                return measure_base(self, model, tokenizer)
            finally:
                timings.measure_base += time.perf_counter() - started
                timings.calls["measure_base"] += 1
                timings.cached["measure_base"] += _hits(self.session) - hits

        def timed_answer_all(self, paradigm, calls):
            labels = timings.label(self, calls)
            started = time.perf_counter()
            hits = _hits(self.session)
            try:
                return answer_all(self, paradigm, calls)
            finally:
                timings.seconds["answering"] += time.perf_counter() - started
                served = _hits(self.session) - hits  # requests: all calls together, or one call each
                for label, call in zip(labels, calls, strict=True):
                    timings.calls[label] += 1
                    timings.questions[label] += len(call.items)
                timings.cached["calls"] += len(calls) if served and self.parts_together else served

        def counted_rollout(model, tokenizer, queries, *args, **kwargs):
            if state["evaluating"]:
                timings.rollouts += 1
                timings.generated_rows += len(queries)
            return rollout(model, tokenizer, queries, *args, **kwargs)

        def timed_evaluate(self, paradigm, stream_phase=None):
            started = time.perf_counter()
            state["evaluating"] = True
            try:
                return evaluate(self, paradigm, stream_phase)
            finally:
                state["evaluating"] = False
                timings.evaluations.append(time.perf_counter() - started)

        def timed_kl(*args, **kwargs):
            started = time.perf_counter()
            try:
                return kl(*args, **kwargs)
            finally:
                timings.seconds["kl_to_base"] += time.perf_counter() - started
                timings.calls["kl_to_base"] += 1

        start = background_evaluation.BackgroundEvaluation.start
        request = background_evaluation.BackgroundEvaluation.request

        def counted_start(background, measure, label=None, serve=None):
            timings.in_copies += 1
            timings.forks += 1
            return start(background, measure, label, serve)

        def counted_request(background, update, label=None):
            timings.in_copies += 1
            return request(background, update, label)

        cls.measure_base, cls._answer_all, cls.evaluate = timed_measure_base, timed_answer_all, timed_evaluate
        evaluation.kl_to_reference = timed_kl
        session_module.rollout = counted_rollout
        background_evaluation.BackgroundEvaluation.start = counted_start
        background_evaluation.BackgroundEvaluation.request = counted_request
        try:
            yield self
        finally:
            cls.measure_base, cls._answer_all, cls.evaluate = saved[:3]
            evaluation.kl_to_reference = saved[3]
            session_module.rollout = rollout
            background_evaluation.BackgroundEvaluation.start = start
            background_evaluation.BackgroundEvaluation.request = request


def _hits(session) -> int:
    cache = getattr(session, "answers", None)
    return cache.hits if cache is not None else 0


def arm_name(config) -> str:
    algorithm = config.algorithm.name
    return config.paradigm.name + (f":{algorithm}" if config.paradigm.uses_algorithm else "")


def select(backbone: str, experiment: Path | None, arms: list[str], extra: list[str]):
    """The experiment's runs for ``arms`` (first grid point of each), seed 0, on ``backbone``, one torch
    thread, every evaluation in place (what the benchmarks time happens in this process); ``extra``
    overrides any of these."""
    path = experiment or EXPERIMENTS.get(backbone.split(":")[0], EXPERIMENTS["builtin"])
    overrides = [f"backbone={backbone}", "seeds=[0]", "threads=1", "evaluation.background=false", *extra]
    runs = load_experiment(path, overrides).runs()
    chosen = []
    for arm in arms:
        matches = [c for c in runs if arm_name(c) == arm]
        if not matches:
            raise SystemExit(
                f"--arms: {arm} is not in {path.name}'s grid; use one of {sorted(map(arm_name, runs))}"
            )
        chosen.append(matches[0])
    return path, chosen


def add_run_arguments(parser: argparse.ArgumentParser, arms: Sequence[str], repeats: int) -> None:
    """The options every benchmark that runs an experiment's arms takes (``select``'s, and the output)."""
    parser.add_argument("--backbone", default="builtin", help="builtin (default), builtin:tiny, smollm2, ...")
    parser.add_argument(
        "--experiment", type=Path, help="experiment file (default: the backbone's comparison)"
    )
    parser.add_argument("--arms", nargs="+", default=list(arms), help="paradigm[:algorithm] per run")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra KEY=VALUE override")
    parser.add_argument("--repeats", type=int, default=repeats, help="measure each arm this many times")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")


def experiment_name(path: Path) -> str:
    """The experiment file as the results name it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_results(out: Path | None, result: dict) -> None:
    """Write ``result`` as indented JSON to ``out`` (nothing when None), creating its directory."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")


def run_arms(args, benchmark: str, measure: Callable[[object], dict], report: Callable[[dict], None]) -> None:
    """What every benchmark that measures an experiment's arms does with its parsed options
    (:func:`add_run_arguments`): ``measure`` each selected run, ``report`` each row as it comes, and write
    the rows to ``args.out`` under ``benchmark``'s name, with the experiment and the overrides."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path, configs = select(args.backbone, args.experiment, args.arms, args.sets)
    rows = []
    for config in configs:
        rows.append(measure(config))
        report(rows[-1])
    write_results(
        args.out,
        {"benchmark": benchmark, "experiment": experiment_name(path), "overrides": args.sets, "rows": rows},
    )


def measure(config, answer_cache: bool, shared: bool = False) -> dict:
    """One run, timed; ``shared`` keeps the answers earlier runs of the process stored (a grid's runs)."""
    if not shared:
        answer_cache_module.SHARED.clear()
    timings = Timings()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with timings.installed(), PeakMemory() as memory:
        final = execute(config, None, progress=False, answer_cache=answer_cache)
    wall = time.perf_counter() - started
    evaluating = sum(timings.evaluations)
    waited = final[m.EVALUATION_WAIT_SECONDS]
    parts = {part: timings.seconds.get(part, 0.0) for part in PARTS}
    parts["other"] = evaluating - sum(v for k, v in parts.items() if k != "other")
    return {
        "arm": arm_name(config),
        "answer_cache": answer_cache,
        "shared_with_earlier_runs": answer_cache and shared,
        "feedback_events": config.budget.feedback_events,
        "every": config.evaluation.every,
        "general_items": config.evaluation.general_items,
        "wall_seconds": wall,
        "measure_base_seconds": timings.measure_base,
        "background": config.evaluation.background,
        "evaluation_seconds": evaluating,
        "evaluation_wait_seconds": waited,
        "evaluation_seconds_logged": final[m.EVALUATION_SECONDS],
        "evaluations": len(timings.evaluations) + timings.in_copies,
        "evaluations_in_copies": timings.in_copies,
        "copies_forked": timings.forks,
        "seconds_per_evaluation": timings.evaluations,
        "evaluation_share": (timings.measure_base + waited) / wall,
        "training_share": 1 - (timings.measure_base + waited) / wall,
        "parts_seconds": parts,
        "parts_share_of_evaluation": {k: v / evaluating for k, v in parts.items()} if evaluating else {},
        "part_calls": dict(timings.calls),
        "part_calls_from_cache": timings.cached.get("calls", 0),
        "part_calls_answering": sum(timings.calls.get(part, 0) for part in QUESTION_PARTS),
        "measure_base_calls_from_cache": timings.cached.get("measure_base", 0),
        "evaluation_rollouts": timings.rollouts,
        "evaluation_rows_generated": timings.generated_rows,
        "questions_answered": {part: timings.questions.get(part, 0) for part in QUESTION_PARTS},
        "evaluation_questions": sum(timings.questions.values()),
        "peak_rss_bytes": final[m.PEAK_RSS_BYTES],
        "peak_pss_with_copies_bytes": memory.peak_bytes,
        "final_personal_accuracy": final.get("eval/personal_accuracy"),
        "final_general_accuracy": final.get("eval/general_accuracy"),
        "load_average_1min": [load, os.getloadavg()[0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, DEFAULT_ARMS, repeats=1)
    parser.add_argument(
        "--no-answer-cache", action="store_true", help="answer every evaluation call (the reference)"
    )
    parser.add_argument("--both", action="store_true", help="each arm without, then with, the answer cache")
    parser.add_argument(
        "--grid",
        action="store_true",
        help="keep what earlier arms stored, as the runs of one harness run do (default: each run alone)",
    )
    parser.add_argument(
        "--background",
        action="store_true",
        help="let full_ft and adapter runs evaluate in a forked copy beside training (evaluation.background; "
        "default here: every evaluation in place, as the results before it were measured)",
    )
    parser.add_argument(
        "--every",
        type=int,
        nargs="+",
        help="run each arm once per evaluation.every value (default: the experiment's own schedule)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    schedules = [[f"evaluation.every={every}"] for every in args.every] if args.every else [[]]
    if args.background:
        schedules = [[*schedule, "evaluation.background=true"] for schedule in schedules]
    configs = []
    for schedule in schedules:
        path, chosen = select(args.backbone, args.experiment, args.arms, [*args.sets, *schedule])
        configs.extend(chosen)
    modes = [False, True] if args.both else [not args.no_answer_cache]
    rows = []
    for config in configs:
        for mode in modes:
            for repeat in range(args.repeats):
                row = measure(config, mode, args.grid) | {"repeat": repeat}
                rows.append(row)
                parts = " ".join(f"{k}={v:.2f}" for k, v in row["parts_seconds"].items() if v)
                print(
                    f"{row['arm']:14s} every {row['every']:<5d} cache={'on ' if mode else 'off'}"
                    f"{' grid' if args.grid else ''} "
                    f"wall {row['wall_seconds']:7.1f}s "
                    f"base {row['measure_base_seconds']:5.1f}s "
                    f"evals {row['evaluation_seconds_logged']:6.1f}s "
                    f"({row['evaluations']}, {row['evaluations_in_copies']} in "
                    f"{row['copies_forked']} copies) waited "
                    f"{row['evaluation_wait_seconds']:6.1f}s share {row['evaluation_share']:.2f} | {parts}",
                    flush=True,
                )
    result = {
        "benchmark": "eval_share",
        "backbone": args.backbone,
        "experiment": experiment_name(path),
        "overrides": args.sets,
        "grid": args.grid,
        "machine": "2-core CPU shared with other jobs; one torch thread per run",
        "rows": rows,
    }
    write_results(args.out, result)


if __name__ == "__main__":
    main()
