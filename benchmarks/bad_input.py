"""Every bad-input and first-contact case of issue 17, run as a new user would, with what happened.

Each case runs ``harness`` (as ``python -m experiments.cli``) in a fresh directory with its own
MLflow store, and records the exit status (or ``timeout`` / ``killed at the memory cap``), the
seconds it took, the peak resident memory of the process tree, how many lines it wrote to stderr,
whether one of them was a traceback, its last stderr line, and a case-specific check of what it
left behind (run statuses in the store, files written outside their folders, temporary folders).

``--code DIR`` runs another checkout of the project (e.g. ``git archive main | tar -x -C DIR``)
with this virtual environment, so the same cases can be run before and after a change:

    .venv/bin/python benchmarks/bad_input.py --label after
    .venv/bin/python benchmarks/bad_input.py --label before --code /tmp/before

Results go to ``benchmarks/results/bad_input.json`` under the label (other labels are kept).
Timings are wall seconds on whatever else the machine is doing; the harness answers are the point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bad_input.json"
MEMORY_CAP = 4 * 2**30  # the case runner stops a process tree above this resident size
TINY = ["--set", "backbone=builtin:tiny"]


@dataclass
class Outcome:
    status: str
    seconds: float
    peak_rss_mib: float
    stderr_lines: int
    traceback: bool
    last_stderr: str
    stdout_tail: str = ""
    checks: dict = field(default_factory=dict)


@dataclass
class Context:
    code: Path
    workdir: Path
    env: dict

    def harness(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "experiments.cli", *args]

    @property
    def smoke(self) -> str:
        return str(self.code / "experiments" / "smoke.yaml")

    @property
    def store(self) -> Path:
        return self.workdir / "mlflow.db"


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def launch(ctx: Context, args: list[str], cwd: Path | None = None, env: dict | None = None):
    """Start ``args``; the process carries its start time (``launched``) for ``finish``."""
    launched = time.perf_counter()
    process = subprocess.Popen(
        args,
        cwd=cwd or ctx.workdir,
        env=env or ctx.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    process.launched = launched
    return process


def finish(
    process: subprocess.Popen,
    timeout: float,
    interrupt_after: float | None = None,
    interrupt_when: Callable[[], bool] | None = None,
    sig: int = signal.SIGINT,
) -> Outcome:
    """Wait for ``process`` (killing it past ``timeout`` or the memory cap); optionally signal it."""
    started, peak, status = process.launched, 0, None
    watched = psutil.Process(process.pid)
    sent = False
    while process.poll() is None:
        elapsed = time.perf_counter() - started
        with contextlib.suppress(psutil.Error):
            peak = max(peak, _tree_rss(watched))
        if not sent and (
            (interrupt_after is not None and elapsed >= interrupt_after)
            or (interrupt_when is not None and interrupt_when())
        ):
            os.killpg(process.pid, sig)
            sent = True
        if peak > MEMORY_CAP:
            os.killpg(process.pid, signal.SIGKILL)
            status = f"killed at the {MEMORY_CAP / 2**30:.0f} GiB cap after {elapsed:.0f} s"
            break
        if elapsed > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            status = f"no answer in {timeout:.0f} s (killed)"
            break
        time.sleep(0.05)
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    lines = [line for line in err.splitlines() if line.strip()]
    return Outcome(
        status=status or f"exit {process.returncode}",
        seconds=round(seconds, 2),
        peak_rss_mib=round(peak / 2**20),
        stderr_lines=len(lines),
        traceback=any("Traceback" in line for line in lines),
        last_stderr=(lines[-1][:240] if lines else ""),
        stdout_tail=" | ".join(out.strip().splitlines()[-3:])[:400],
    )


def run_once(ctx: Context, args: list[str], timeout: float = 600, **kwargs) -> Outcome:
    return finish(launch(ctx, ctx.harness(*args)), timeout, **kwargs)


def run_statuses(store: Path) -> dict[str, int]:
    """How many runs of the SQLite store end in each status (``{}`` when there is no store)."""
    if not store.is_file():
        return {}
    try:
        with sqlite3.connect(store) as db:
            rows = db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
    except sqlite3.Error as error:
        return {"unreadable": str(error)}
    return dict(rows)


def finished_smoke_run(ctx: Context) -> str:
    """A finished tiny smoke run in ``ctx``'s store; returns its run id."""
    outcome = run_once(ctx, ["run", ctx.smoke, *TINY, "--quiet"])
    assert outcome.status == "exit 0", outcome
    with sqlite3.connect(ctx.store) as db:
        (run_id,) = db.execute(
            "SELECT run_uuid FROM runs WHERE name LIKE 'frozen-%' ORDER BY start_time DESC LIMIT 1"
        ).fetchone()
    return run_id


# -- the cases ------------------------------------------------------------------------------------
def case_budget_1e12(ctx):
    outcome = run_once(
        ctx, ["run", ctx.smoke, *TINY, "--set", "budget.feedback_events=1000000000000", "--quiet"], 300
    )
    outcome.checks["runs"] = run_statuses(ctx.store)
    return outcome


def case_tracking_unreachable(ctx):
    return run_once(ctx, ["run", ctx.smoke, *TINY, "--tracking-uri", "http://127.0.0.1:9", "--quiet"], 60)


def case_tracking_unreachable_interrupted(ctx):
    args = ["run", ctx.smoke, *TINY, "--tracking-uri", "http://127.0.0.1:9", "--quiet"]
    return run_once(ctx, args, 60, interrupt_after=20)


def _concurrent_first_runs(ctx, n: int):
    processes = [launch(ctx, ctx.harness("run", ctx.smoke, *TINY, "--quiet")) for _ in range(n)]
    outcomes = [finish(p, 600) for p in processes]
    worst = next((o for o in outcomes if o.status != "exit 0"), outcomes[0])
    worst.checks["statuses"] = [o.status for o in outcomes]
    after = run_once(ctx, ["run", ctx.smoke, *TINY, "--quiet"])
    worst.checks["next run"] = f"{after.status}, {after.stderr_lines} stderr lines"
    worst.checks["runs"] = run_statuses(ctx.store)
    return worst


def case_two_first_runs(ctx):
    return _concurrent_first_runs(ctx, 2)


def case_eight_first_runs(ctx):
    return _concurrent_first_runs(ctx, 8)


def _backbone(ctx, spec: str):
    outcome = run_once(ctx, ["run", ctx.smoke, "--set", f"backbone={spec}", "--quiet"], 300)
    outcome.checks["runs"] = run_statuses(ctx.store)
    return outcome


def case_backbone_missing_dir(ctx):
    return _backbone(ctx, "/nonexistent/dir")


def case_backbone_not_a_model(ctx):
    directory = ctx.workdir / "not-a-model"
    directory.mkdir()
    (directory / "notes.txt").write_text("not a model\n")
    return _backbone(ctx, str(directory))


def case_backbone_builtin_nope(ctx):
    return _backbone(ctx, "builtin:nope")


def case_backbone_unknown_hub_id_offline(ctx):
    return _backbone(ctx, "nobody-here/no-such-model")


def case_suite_as_list(ctx):
    return run_once(ctx, ["run", ctx.smoke, *TINY, "--set", "task.suite=[default]", "--quiet"])


def case_tracking_bad_scheme(ctx):
    return run_once(ctx, ["run", ctx.smoke, *TINY, "--tracking-uri", "notascheme://x", "--quiet"], 120)


def case_report_out_unwritable(ctx):
    finished_smoke_run(ctx)
    return run_once(ctx, ["report", "--experiment", "smoke", "--out", "/proc/harness-report"], 300)


def case_report_out_existing_file(ctx):
    finished_smoke_run(ctx)
    (ctx.workdir / "taken").write_text("a file\n")
    return run_once(ctx, ["report", "--experiment", "smoke", "--out", "taken"], 300)


def case_ui_port_99999(ctx):
    return run_once(ctx, ["ui", "--port", "99999"], 60)


def case_ctrl_c_in_first_second(ctx):
    outcome = run_once(ctx, ["run", ctx.smoke, *TINY, "--quiet"], 120, interrupt_after=1.0)
    outcome.checks["runs"] = run_statuses(ctx.store)
    return outcome


def case_reward_weight_1e309(ctx):
    return run_once(ctx, ["run", ctx.smoke, *TINY, "--set", "reward.weights.correctness=1e309", "--quiet"])


def case_budget_true(ctx):
    outcome = run_once(ctx, ["config", "show", ctx.smoke, "--set", "budget.feedback_events=true"])
    return outcome


def case_empty_file(ctx):
    (ctx.workdir / "empty.yaml").write_text("")
    return run_once(ctx, ["config", "show", "empty.yaml"])


def case_seed_ignored(ctx):
    return run_once(ctx, ["config", "show", ctx.smoke, "--set", "seed=5"])


def case_seed_in_an_error_message(ctx):
    return run_once(ctx, ["config", "show", ctx.smoke, "--set", "seeds=[1000000000]"])


def case_aliased_grid_points(ctx):
    (ctx.workdir / "grid.yaml").write_text(
        "task: {suite: default}\nbudget: {feedback_events: 8}\n"
        "grid:\n  - {paradigm.name: frozen}\n  - {paradigm: {name: frozen}}\n  - {}\n"
    )
    return run_once(ctx, ["config", "show", "grid.yaml"])


def case_name_with_dots_in_paths(ctx):
    nested = ctx.workdir / "a" / "b"
    nested.mkdir(parents=True)
    spec = str(ctx.code / "experiments" / "search_penalty.yaml")
    args = [
        "sweep",
        spec,
        *TINY,
        "--set",
        "name=../../x",
        "--set",
        "seeds=[0]",
        "--set",
        "budget.feedback_events=8",
        "--set",
        "evaluation.every=8",
        "--n-trials",
        "1",
        "--quiet",
    ]
    outcome = finish(launch(ctx, ctx.harness(*args), cwd=nested), 300)
    outside = sorted(
        str(p.relative_to(ctx.workdir)) for p in ctx.workdir.rglob("*") if nested not in p.parents
    )
    outcome.checks["written outside a/b"] = [p for p in outside if p not in ("a", "a/b")]
    return outcome


def case_from_run_temp_folders(ctx):
    run_id = finished_smoke_run(ctx)
    scratch = ctx.workdir / "tmp"
    scratch.mkdir()
    env = {**ctx.env, "TMPDIR": str(scratch)}
    outcome = finish(launch(ctx, ctx.harness("run", "--from-run", run_id, "--quiet"), env=env), 300)
    # torch keeps its own compile cache there (torchinductor_<user>); the harness must leave nothing
    outcome.checks["left in TMPDIR"] = sorted(p.name for p in scratch.iterdir())
    return outcome


def case_help_time(ctx):
    outcomes = [run_once(ctx, ["--help"], 120) for _ in range(5)]
    median = statistics.median(o.seconds for o in outcomes)
    outcome = outcomes[0]
    outcome.checks["seconds of 5 calls"] = [o.seconds for o in outcomes]
    outcome.checks["median seconds"] = median
    return outcome


def case_typo_exit_2_time(ctx):
    (ctx.workdir / "typo.yaml").write_text("paradigm:\n  nmae: frozen\n")
    outcomes = [run_once(ctx, ["run", "typo.yaml"], 120) for _ in range(5)]
    outcome = outcomes[0]
    outcome.checks["median seconds"] = statistics.median(o.seconds for o in outcomes)
    return outcome


def case_first_tiny_run(ctx):
    env = {**ctx.env, "HARNESS_CACHE_DIR": str(ctx.workdir / "cache")}
    process = launch(ctx, ctx.harness("run", ctx.smoke, *TINY), env=env)
    started = time.perf_counter()
    out, err = process.communicate(timeout=900)
    outcome = Outcome(
        status=f"exit {process.returncode}",
        seconds=round(time.perf_counter() - started, 2),
        peak_rss_mib=0,
        stderr_lines=len([x for x in err.splitlines() if x.strip()]),
        traceback="Traceback" in err,
        last_stderr=(err.strip().splitlines() or [""])[-1][:240],
        stdout_tail=" | ".join(out.strip().splitlines()[-3:])[:400],
    )
    text = out + err
    outcome.checks["announces the build"] = "builtin:tiny" in text and "build" in text.lower()
    outcome.checks["raw trainer dict"] = "'train_runtime'" in text or "{'loss'" in text
    outcome.checks["says near-zero accuracy is expected"] = "by design" in text or "expected" in text
    return outcome


def case_artifacts_follow_the_store(ctx):
    other = ctx.workdir / "elsewhere"
    other.mkdir()
    uri = f"sqlite:///{other / 'store.db'}"
    outcome = run_once(ctx, ["run", ctx.smoke, *TINY, "--tracking-uri", uri, "--quiet"])
    outcome.checks["./mlruns created in the working directory"] = (ctx.workdir / "mlruns").exists()
    outcome.checks["files beside the store"] = sorted(p.name for p in other.iterdir())
    return outcome


def case_orphaned_running_runs(ctx):
    args = ["run", ctx.smoke, *TINY, "--set", "budget.feedback_events=100000", "--quiet"]

    def child_running() -> bool:
        try:
            with sqlite3.connect(ctx.store) as db:
                return bool(
                    db.execute(
                        "SELECT 1 FROM runs WHERE status='RUNNING' AND name LIKE 'frozen-%'"
                    ).fetchone()
                )
        except sqlite3.Error:
            return False

    killed = run_once(ctx, args, 300, interrupt_when=child_running, sig=signal.SIGKILL)
    before = run_statuses(ctx.store)
    outcome = run_once(ctx, ["run", ctx.smoke, *TINY, "--quiet"])
    outcome.checks["killed run"] = killed.status
    outcome.checks["runs after the kill"] = before
    outcome.checks["runs after the next invocation"] = run_statuses(ctx.store)
    return outcome


CASES: dict[str, Callable[[Context], Outcome]] = {
    name.removeprefix("case_"): fn for name, fn in globals().items() if name.startswith("case_")
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--label", required=True, help="key under which the results are stored")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    mine = results.setdefault(args.label, {})
    for name, case in CASES.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"case-{name}-") as scratch:
            workdir = Path(scratch)
            env = {
                **os.environ,
                "PYTHONPATH": str(args.code.resolve()),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "OMP_NUM_THREADS": "1",
                "HARNESS_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
            }
            env.pop("MLFLOW_TRACKING_URI", None)
            outcome = case(Context(args.code.resolve(), workdir, env))
        mine[name] = outcome.__dict__
        print(f"{name}: {outcome.status} in {outcome.seconds} s; {outcome.last_stderr} {outcome.checks}")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
