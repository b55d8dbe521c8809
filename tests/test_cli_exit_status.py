"""An interrupted command exits 130 however it was started, ``python -m experiments.cli`` included."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A module that catches a KeyboardInterrupt raised inside ``exec`` of a string (as a SIGTERM landing in
#: library code built that way does), then exits 130 the way ``experiments.cli.main`` does.
PROBE = """
import sys
from experiments.cli import _forget_caught_interrupts
try:
    exec("raise KeyboardInterrupt")
except KeyboardInterrupt:
    pass
if sys.argv[1] == "forget":
    _forget_caught_interrupts()
sys.exit(130)
"""


@pytest.mark.parametrize(("mode", "status"), [("forget", 130), ("keep", -2)])
def test_a_caught_interrupt_leaves_the_asked_exit_status(tmp_path, mode, status):
    (tmp_path / "interrupt_probe.py").write_text(PROBE)
    done = subprocess.run(
        [sys.executable, "-m", "interrupt_probe", mode],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    # "keep" shows the interpreter's behaviour the helper undoes: killed by SIGINT, not exit 130
    assert done.returncode == status
