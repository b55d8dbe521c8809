"""`harness ui` serves the same store on 127.0.0.1, small, and opens an experiment on its runs."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker, runs_page_url
from tests.conftest import SMOKE, TINY
from tests.test_report_render import CHROMIUM, _chromium


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ui(directory: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """`harness ui` on ``port``, answering; its output goes to a file (returned)."""
    log = directory / "ui.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "ui", "--port", str(port)],
        cwd=directory,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    while True:
        try:
            search(port)
            return server, log
        except OSError:
            assert server.poll() is None, log.read_text()
            assert time.time() < deadline, "the UI did not answer within 120 s"
            time.sleep(1)


def search(port: int) -> list[str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 50}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    return [e["name"] for e in json.load(urllib.request.urlopen(request, timeout=5))["experiments"]]


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=30)


def test_ui_serves_the_runs_of_the_store_with_one_worker_and_no_job_runners(tracking_uri, tmp_path):
    Tracker(tracking_uri).start_run("ui-check", "a-run").finish()
    server, _ = start_ui(tmp_path, free_port())
    try:
        assert "ui-check" in search(server.args[-1])
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        # mlflow ui itself and one uvicorn worker (MLflow's defaults: 4 workers and 8 GenAI job processes)
        assert len(processes) <= 3, [" ".join(p.cmdline())[:100] for p in processes]
    finally:
        stop(server)


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (apt-get install -y chromium)")
def test_the_ui_opens_the_smoke_experiment_on_its_runs_grouped_by_config(tracking_uri, tiny_base, tmp_path):
    run_experiment(load_experiment(SMOKE, [TINY, "seeds=[0, 1]"]), Tracker(tracking_uri), progress=False)
    port = free_port()
    server, log = start_ui(tmp_path, port)
    try:
        experiment = Tracker(tracking_uri).client.get_experiment_by_name("smoke")
        url = runs_page_url(f"http://127.0.0.1:{port}", experiment.experiment_id)
        assert f"smoke: {url}" in log.read_text()  # what `harness ui` tells the researcher to open
        shot = tmp_path / "runs.png"
        page = _chromium(tmp_path, "--dump-dom", "--window-size=1280,900", "--virtual-time-budget=30000", url)
        painted = _chromium(
            tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--virtual-time-budget=30000", url
        )
    finally:
        stop(server)
    assert page.returncode == 0 and painted.returncode == 0, page.stderr[-2000:]
    dom = page.stdout
    assert "Detect Issues" not in dom  # not the GenAI overview
    assert "Group: frozen" in dom  # the runs list, grouped by the `group` tag
    assert "frozen-default-s0" in dom and "frozen-default-s1" in dom  # each seed of the group listed
    assert shot.is_file() and shot.stat().st_size > 20_000
