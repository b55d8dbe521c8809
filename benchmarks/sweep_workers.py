"""Wall time of one small sweep, or grid, with one local worker versus two (``--workers N``).

The same study each time, from scratch in its own temp directory (fresh journal file, fresh
MLflow SQLite store): the adapter with GRPO on the default suite, tiny builtin base, a TPE sweep
of two reward weights, ``--trials`` trials of one seed and ``--events`` feedback events each
(several values: one study size each, so that start-up and trial time can be told apart).
Each measurement is the wall time of the whole command, process start-up included (a worker
imports torch, transformers and mlflow), so it is what a researcher waits for. Per trial the
Optuna storage's start and end times give the mean trial duration, which shows how much two
workers slow each other down when they share the CPU.

    python benchmarks/sweep_workers.py [--trials 6] [--events 256 2048] [--repeats 2]
        [--out benchmarks/results/sweep_workers.json]

``--grid`` measures ``harness run --workers N`` instead: the same experiment without the sweep, a grid
of ``--trials`` runs (seeds 0 to trials - 1, the default reward weights); each run's duration is its
MLflow start and end time.

Writes the JSON and prints a Markdown table. Machine load is recorded because the CPU may be
shared. No timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import optuna
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sweep_workers.json"
NAME = "bench_sweep"


def experiment(trials: int, events: int, grid: bool = False) -> dict:
    """The benchmark's experiment file: adapter + GRPO, a TPE sweep of two reward weights (``grid``: no
    sweep, one run per seed 0 to ``trials`` - 1)."""
    file = {
        "name": NAME,
        "backbone": "builtin:tiny",
        "task": {"suite": "default", "batch_size": 4},
        "paradigm": {"name": "adapter"},
        "algorithm": {"name": "grpo"},
        "budget": {"feedback_events": events},
        "evaluation": {"every": max(events // 4, 1), "general_items": 12},
        "seeds": [0],
        "sweep": {
            "space": {
                "reward.weights.search_cost": {"type": "float", "low": 0.0, "high": 1.0},
                "reward.weights.format": {"type": "float", "low": 0.0, "high": 1.0},
            },
            "objectives": ["eval/personal_accuracy"],
            "sampler": {"name": "tpe", "seed": 0},
            "n_trials": trials,
        },
    }
    if grid:
        del file["sweep"]
        file["seeds"] = list(range(trials))
    return file


def run_once(workers: int, trials: int, events: int, grid: bool = False) -> dict:
    """One sweep (or grid) from scratch with ``workers`` local workers: wall seconds and trial statistics."""
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as scratch:
        directory = Path(scratch)
        file = directory / f"{NAME}.yaml"
        file.write_text(yaml.safe_dump(experiment(trials, events, grid), sort_keys=False))
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HARNESS_TRACKING_URI": f"sqlite:///{directory / 'mlflow.db'}",
            "PYTHONPATH": str(ROOT),
        }
        verb = "run" if grid else "sweep"
        command = [sys.executable, "-m", "experiments.cli", verb, str(file), "--workers", str(workers)]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run([*command, "--quiet"], cwd=directory, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{verb} with {workers} workers failed:\n{done.stderr[-3000:]}")
        if grid:
            measured = {"workers": workers, "wall_seconds": round(wall, 2)}
            return (
                measured
                | _grid_runs(env["HARNESS_TRACKING_URI"])
                | {"load_average_before": round(load_before, 2)}
            )
        storage = JournalStorage(JournalFileBackend(str(directory / "optuna-journal" / f"{NAME}.log")))
        study = optuna.load_study(study_name=NAME, storage=storage)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in complete]
        return {
            "workers": workers,
            "wall_seconds": round(wall, 2),
            "complete_trials": len(complete),
            "all_trials": len(study.trials),
            "mean_trial_seconds": round(statistics.mean(durations), 2),
            "worker_processes_used": len({t.user_attrs.get("worker_pid") for t in complete}),
            "load_average_before": round(load_before, 2),
        }


def _grid_runs(tracking_uri: str) -> dict:
    """The grid's finished runs in the MLflow store (not the invocation's parent run): how many, their
    mean duration."""
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
    runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in finished]
    return {
        "complete_trials": len(finished),
        "all_trials": len(runs),
        "mean_trial_seconds": round(statistics.mean(durations), 2),
    }


def summarize(measurements: list[dict], events: int) -> dict:
    """Median wall time per worker count for one study size, and the speedup of two over one."""
    of_size = [m for m in measurements if m["events"] == events]
    one = statistics.median(m["wall_seconds"] for m in of_size if m["workers"] == 1)
    two = statistics.median(m["wall_seconds"] for m in of_size if m["workers"] == 2)
    trial = {
        w: round(statistics.mean(m["mean_trial_seconds"] for m in of_size if m["workers"] == w), 2)
        for w in (1, 2)
    }
    return {
        "feedback_events_per_trial": events,
        "median_wall_seconds": {"1_worker": one, "2_workers": two},
        "mean_trial_seconds": {"1_worker": trial[1], "2_workers": trial[2]},
        "speedup_2_vs_1": round(one / two, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument(
        "--events", type=int, nargs="+", default=[256, 2048], help="Feedback events per trial."
    )
    parser.add_argument("--repeats", type=int, default=2, help="Measurements per worker count and size.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--grid", action="store_true", help="a grid of --trials runs (harness run) instead of a sweep"
    )
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "experiments.cli", "base", "build", "--backbone", "builtin:tiny"],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # built once, outside the timings
    measurements = []
    for events in args.events:
        for _ in range(args.repeats):
            for workers in (1, 2):
                measurements.append({"events": events, **run_once(workers, args.trials, events, args.grid)})
                print(json.dumps(measurements[-1]), flush=True)
    sizes = [summarize(measurements, events) for events in args.events]
    result = {
        "benchmark": "sweep_workers",
        "command": "harness run (a grid of one run per seed)" if args.grid else "harness sweep",
        "study": {"trials": args.trials, "seeds_per_trial": 1, "paradigm": "adapter", "algorithm": "grpo"},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "optuna": optuna.__version__,
        },
        "measurements": measurements,
        "sizes": sizes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(args.out)
    print("\n| events/trial | 1 worker wall s | 2 workers wall s | speedup | trial s (1 / 2 workers) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        wall, trial = size["median_wall_seconds"], size["mean_trial_seconds"]
        print(
            f"| {size['feedback_events_per_trial']} | {wall['1_worker']:.1f} | {wall['2_workers']:.1f} | "
            f"{size['speedup_2_vs_1']:.2f}x | {trial['1_worker']:.1f} / {trial['2_workers']:.1f} |"
        )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
