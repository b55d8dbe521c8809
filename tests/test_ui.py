"""`harness ui` serves the same store on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

from experiments.tracking import Tracker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_serves_the_runs_of_the_store(tracking_uri, tmp_path):
    Tracker(tracking_uri).start_run("ui-check", "a-run").finish()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                    data=b'{"max_results": 50}',
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                names = [
                    e["name"] for e in json.load(urllib.request.urlopen(request, timeout=5))["experiments"]
                ]
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.time() < deadline, "the UI did not answer within 120 s"
                time.sleep(1)
        assert "ui-check" in names
    finally:
        server.terminate()
        server.wait(timeout=30)
