"""The light core: the command line's first answers import no model stack (torch, transformers, FAISS)
and no MLflow.

``harness --help``, ``harness config show`` and the exit-2 line for a typo in an experiment file,
for every command that reads one, each run as a fresh process (what a user types); the modules it
imported come from ``python -X importtime``. How long they take is measured by
``benchmarks/cli_startup.py``, not asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

#: The model stack, and MLflow (about a second to import: the store is opened after the checks).
MODEL_STACK = ("torch", "transformers", "faiss", "mlflow")
TYPO = "paradigm:\n  nmae: frozen\n"


def imported(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The finished ``python -m experiments.cli ARGS`` and the top-level modules it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "experiments.cli", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "import time:" in line}
    return done, names


def test_help_and_config_show_import_no_model_stack(tmp_path):
    for args in (["--help"], ["config", "show", str(ROOT / "experiments" / "smoke.yaml")]):
        done, names = imported(args, tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "typer" in names  # the probe sees the process's imports
        assert not names & set(MODEL_STACK), (args, sorted(names & set(MODEL_STACK)))


@pytest.mark.parametrize(
    "command",
    [
        ["run", "FILE"],
        ["run", "FILE", "--workers", "2"],
        ["sweep", "FILE"],
        ["tune", "FILE"],
        ["meta-train", "FILE"],
        ["config", "show", "FILE"],
        ["export-users", "FILE", "--out", "u.jsonl"],
    ],
    ids=lambda c: "-".join(a for a in c if a != "FILE"),
)
def test_a_typo_gets_its_exit_2_line_without_the_model_stack(tmp_path, command):
    typo = tmp_path / "typo.yaml"
    typo.write_text(TYPO)
    done, names = imported([str(typo) if arg == "FILE" else arg for arg in command], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "import time:" not in line]
    assert errors == ["error: unknown key 'paradigm.nmae': did you mean 'paradigm.name'?"]
    assert not names & set(MODEL_STACK), sorted(names & set(MODEL_STACK))
    assert not (tmp_path / "u.jsonl").exists() and not (tmp_path / "mlflow.db").exists()
