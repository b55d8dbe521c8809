"""Only ``experiments/tracking.py`` writes to MLflow (DESIGN.md, CONVENTIONS.md).

Every other module creates runs and logs through ``Tracker`` and ``TrackedRun``, so tags, the
provenance of a run, orphan handling and artifact locations are decided in one place. This test
greps the source tree for the ways MLflow can be written to directly: its fluent API
(``mlflow.start_run``, ``mlflow.log_metric``...), a client's write methods (``client.create_run``,
``client.set_terminated``...) and names imported from MLflow that write.
"""

from __future__ import annotations

import re

from tests.conftest import ROOT

PACKAGES = ("experiments", "paradigms", "analysis", "tasks", "memory", "benchmarks")
WRITER = ROOT / "experiments" / "tracking.py"

#: MlflowClient methods that write (TrackedRun's own methods are named apart from these, except
#: ``log_artifact``, which only the client call spells with a run id first).
CLIENT_WRITES = (
    r"create_run|set_terminated|set_tag|log_batch|log_metric|log_param|log_artifacts|log_inputs|"
    r"log_text|log_dict|log_figure|log_image|log_table|log_outputs|update_run|delete_run|"
    r"restore_run|create_experiment|set_experiment_tag|delete_experiment|restore_experiment|"
    r"rename_experiment|delete_tag"
)
PATTERNS = {
    "MLflow's fluent API": re.compile(
        r"\bmlflow\.(start_run|end_run|log_\w+|set_tags?|set_experiment\w*|create_experiment|"
        r"delete_\w+|autolog|register_model)\s*\("
    ),
    "an MLflow client's write": re.compile(rf"\bclient\.({CLIENT_WRITES})\s*\("),
    "an MLflow client's log_artifact": re.compile(r"\bclient\.log_artifact\s*\(\s*\w*run_id"),
    "a writer imported from mlflow": re.compile(
        r"^\s*from mlflow(\.tracking\.fluent)? import .*\b(start_run|log_\w+|set_tags?|end_run)\b", re.M
    ),
}


def direct_writes(text: str) -> list[str]:
    """The lines of ``text`` that write to MLflow without experiments.tracking, with what they do."""
    found = []
    for what, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"line {line}: {what} ({match.group(0).strip()})")
    return found


def test_only_experiments_tracking_writes_to_mlflow():
    offenders = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == WRITER or ".venv" in path.parts:
                continue
            found = direct_writes(path.read_text(encoding="utf-8"))
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, (
        f"write to MLflow through experiments/tracking.py (Tracker, TrackedRun): {offenders}"
    )
    assert direct_writes(WRITER.read_text(encoding="utf-8")), (
        "the patterns no longer see tracking.py's writes"
    )


def test_the_patterns_see_each_way_of_writing():
    seen = [
        "mlflow.start_run(run_name='x')",
        "mlflow.log_metric('a', 1.0)",
        "client.create_run(experiment_id, run_name='report')",
        "self.tracker.client.set_terminated(run_id, 'FAILED')",
        "client.log_artifacts(run_id, str(out_dir))",
        "client.log_artifact(run_id, path)",
        "from mlflow import log_metric, start_run",
    ]
    for line in seen:
        assert direct_writes(line), line
    unseen = [
        "run.log_metrics({'a': 1.0}, step)",
        "run.log_artifact(path, 'state')",
        "tracker.start_run(experiment, name, tags=tags)",
        "client.get_run(run_id)",
        "client.search_runs([experiment_id])",
        "mlflow.artifacts.download_artifacts(run_id=run_id)",
    ]
    for line in unseen:
        assert not direct_writes(line), line
