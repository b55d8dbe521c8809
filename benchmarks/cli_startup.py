"""How long the first answers of the command line take: ``harness --help``, a typo in an experiment
file (its exit-2 line, for every command that reads one), and ``harness config show``; and whether
any of them imports the model stack. The target is under 2 s for every exit-2 line (measured here,
not asserted in a test: wall times depend on the machine and its load).

Each command runs ``--repeats`` times as a fresh process (``python -m experiments.cli``, what the
``harness`` script runs), from a temporary directory; the median wall time is reported, with the
modules of the model stack the process imported (``python -X importtime``).

``--code DIR`` runs another checkout with this virtual environment (to compare before and after a
change); results go to ``benchmarks/results/cli_startup.json`` under ``--label``. Wall times depend
on what else the machine does; compare labels measured in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli_startup.json"
MODEL_STACK = ("torch", "transformers", "faiss", "peft", "trl", "datasets", "mlflow")


def commands(code: Path, scratch: Path) -> dict[str, list[str]]:
    typo = scratch / "typo.yaml"
    typo.write_text("paradigm:\n  nmae: frozen\n")
    out = scratch / "users.jsonl"
    return {
        "harness --help": ["--help"],
        "harness run typo.yaml (exit 2)": ["run", str(typo)],
        "harness sweep typo.yaml (exit 2)": ["sweep", str(typo)],
        "harness tune typo.yaml (exit 2)": ["tune", str(typo)],
        "harness meta-train typo.yaml (exit 2)": ["meta-train", str(typo)],
        "harness export-users typo.yaml (exit 2)": ["export-users", str(typo), "--out", str(out)],
        "harness config show typo.yaml (exit 2)": ["config", "show", str(typo)],
        "harness config show smoke.yaml": ["config", "show", str(code / "experiments" / "smoke.yaml")],
    }


def imported_model_stack(args: list[str], env: dict, cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "experiments.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line}
    return sorted(m for m in MODEL_STACK if m in names)


def measure(args: list[str], env: dict, cwd: Path, repeats: int) -> dict:
    seconds, statuses = [], set()
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "experiments.cli", *args], env=env, cwd=cwd, capture_output=True
        )
        seconds.append(round(time.perf_counter() - started, 3))
        statuses.add(done.returncode)
    return {
        "median_seconds": statistics.median(seconds),
        "seconds": seconds,
        "exit_status": sorted(statuses),
        "model_stack_imported": imported_model_stack(args, env, cwd),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--label", required=True, help="key under which the results are stored")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve()), "HF_HUB_OFFLINE": "1"}
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    with tempfile.TemporaryDirectory() as scratch:
        measured = {
            name: measure(argv, env, Path(scratch), args.repeats)
            for name, argv in commands(args.code.resolve(), Path(scratch)).items()
        }
    results[args.label] = {"repeats": args.repeats, "cpus": os.cpu_count(), "commands": measured}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for name, figures in measured.items():
        print(
            f"{args.label}: {name}: median {figures['median_seconds']:.2f} s, exit {figures['exit_status']}, "
            f"model stack imported: {', '.join(figures['model_stack_imported']) or 'none'}"
        )


if __name__ == "__main__":
    main()
