"""Tracking round-trip against a real SQLite MLflow store: nesting, tags, params, steps, status."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import load_experiment
from experiments.run import RunFailed, run_experiment
from experiments.tracking import EXPERIMENT_KIND_TAG, Tracker, cpu_model, group_labels
from paradigms.cpu_kernels import cpu_capability
from tests.conftest import ROOT, SMOKE, SMOKE_PARAMS, TINY

CONTRACT_TAGS = {
    "paradigm",
    "algorithm",
    "task",
    "seed",
    "config_hash",
    "backbone",
    "mlflow.source.git.commit",
    "git_dirty",
}


def children_of(client, experiment_name):
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_runs_nest_under_one_parent_with_contract_tags_params_and_steps(tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY, "seeds=[0, 1]"])
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    parents, children = children_of(client, "smoke")
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.info.run_name for c in children) == ["frozen-default-s0", "frozen-default-s1"]
    for child in children:
        assert set(child.data.tags) >= CONTRACT_TAGS
        assert child.info.status == "FINISHED"
        assert child.data.params["reward.weights.search_cost"] == "0.1"
        assert child.data.params["budget.feedback_events"] == "16"
        seed = int(child.data.tags["seed"])
        # as MLflow holds them: booleans and None written as JSON (true, null), the rest as str()
        expected = {**SMOKE_PARAMS, "backbone": "builtin:tiny"}
        logged = {
            k: json.dumps(v) if v is None or isinstance(v, bool) else str(v) for k, v in expected.items()
        }
        assert child.data.params == {**logged, "seed": str(seed)}  # the whole flattened config, no more
        assert "version.torch" in child.data.tags
        assert child.data.tags["cpu_capability"] == cpu_capability()  # the kernels the run ran
        assert child.data.tags["cpu_model"] == cpu_model()
        # the count the run's kernels split sums by: the config's, else torch's own (the run sets none)
        threads = experiment.runs()[0].threads or torch.get_num_threads()
        assert int(child.data.tags["torch_threads"]) == threads
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "eval/personal_accuracy")]
        assert steps == [0, 8, 16]  # evaluated at the start, every 8 feedback events, and at the end
        train_steps = [m.step for m in client.get_metric_history(child.info.run_id, "train/reward")]
        assert train_steps == [4, 8, 12, 16]  # batches of 4 queries, one event each
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "seeds.json"} <= artifacts
        assert len(client.get_run(child.info.run_id).inputs.dataset_inputs) == 2
    assert children[0].data.tags["config_hash"] == children[1].data.tags["config_hash"]


def corrupt_copy(base: Path, target: Path) -> Path:
    """A copy of a model directory whose weights file is garbage: it passes the file check before
    the run (config, weights and tokenizer files are there) and fails to load inside it."""
    shutil.copytree(base, target)
    (target / "model.safetensors").write_bytes(b"not safetensors")
    return target


def test_a_run_that_raises_is_failed_with_its_error_and_the_cli_exits_1(tracking_uri, tiny_base, tmp_path):
    broken = corrupt_copy(tiny_base, tmp_path / "broken-model")
    with pytest.raises(RunFailed):
        run_experiment(load_experiment(SMOKE, [f"backbone={broken}"]), Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    parents, children = children_of(client, "smoke")
    assert children[0].info.status == "FAILED"
    assert children[0].data.tags["error"]
    assert parents[0].info.status == "FAILED"

    result = CliRunner().invoke(app, ["run", str(SMOKE), "--set", f"backbone={broken}", "--quiet"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["missing", "not a model", "unknown builtin", "unknown hub id offline"])
def test_a_backbone_that_cannot_load_is_bad_input_before_any_run(tracking_uri, tmp_path, monkeypatch, kind):
    """One exit-2 line naming the backbone, and no store created: nothing ran."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a model\n")
    spec = {
        "missing": str(tmp_path / "no-such-model"),
        "not a model": str(notes),
        "unknown builtin": "builtin:nope",
        "unknown hub id offline": "nobody-here/no-such-model",
    }[kind]
    result = CliRunner().invoke(app, ["run", str(SMOKE), "--set", f"backbone={spec}", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backbone: ") and spec in lines[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_from_run_reruns_the_logged_config(tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY, "reward.weights.format=0.3"])
    first = run_experiment(experiment, Tracker(tracking_uri), progress=False)[0]
    result = CliRunner().invoke(app, ["run", "--from-run", first.run_id, "--quiet"])
    assert result.exit_code == 0, result.output
    client = mlflow.MlflowClient(tracking_uri)
    _, children = children_of(client, "smoke")
    assert len(children) == 2
    assert {c.data.params["reward.weights.format"] for c in children} == {"0.3"}
    assert len({c.data.tags["config_hash"] for c in children}) == 1


def test_bad_input_writes_nothing_to_mlflow(tracking_uri, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("paradigm:\n  nmae: frozen\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert not (tmp_path / "mlflow.db").exists()


def test_a_terminated_run_is_marked_killed_not_left_running(tracking_uri, tiny_base, tmp_path):
    """``kill`` (SIGTERM) on ``harness run`` closes the running child and the parent as KILLED."""
    from tests.test_sweep import harness, subprocess_env, wait_for

    overrides = ["--set", TINY, "--set", "budget.feedback_events=100000"]
    command = harness("run", str(SMOKE), *overrides, "--quiet")
    process = subprocess.Popen(command, cwd=tmp_path, env=subprocess_env(tracking_uri))
    client = mlflow.MlflowClient(tracking_uri)

    def child_running():
        if not (tmp_path / "mlflow.db").exists():  # opening a missing store would create it, racing the run
            return []
        found = client.get_experiment_by_name("smoke")
        runs = client.search_runs([found.experiment_id]) if found else []
        return [r for r in runs if "mlflow.parentRunId" in r.data.tags and r.info.status == "RUNNING"]

    wait_for(child_running, 120, "a running child run", process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    parents, children = children_of(client, "smoke")
    assert [r.info.status for r in parents + children] == ["KILLED", "KILLED"]
    assert children[0].data.tags["error"] == "interrupted"


def test_a_child_interrupted_while_it_is_set_up_is_marked_killed(tracking_uri, tiny_base, monkeypatch):
    """The child's run exists (RUNNING, what the test above waits for) before start_config_run has logged its
    config and returned it: an interrupt there closes it too, not only the parent."""
    from experiments.tracking import TrackedRun

    log_dict = TrackedRun.log_dict

    def interrupted_at_the_config(run, data, artifact_file):
        if artifact_file == "config.yaml":
            raise KeyboardInterrupt("signal 15")
        return log_dict(run, data, artifact_file)

    monkeypatch.setattr(TrackedRun, "log_dict", interrupted_at_the_config)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(SMOKE, [TINY]), Tracker(tracking_uri), progress=False)
    parents, children = children_of(mlflow.MlflowClient(tracking_uri), "smoke")
    assert [r.info.status for r in parents + children] == ["KILLED", "KILLED"]
    assert children[0].data.tags["error"] == "interrupted"


def test_experiments_open_on_runs_and_groups_read_paradigm_algorithm_variant(tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY, "seeds=[0, 1]"])
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name("smoke")
    assert found.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"  # the UI's "Model training"
    view = json.loads(found.tags["mlflow.sharedViewState.seeds"])  # what runs_page_url opens
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "group"}]
    assert view["runsHiddenMode"] == "SHOW_ALL"  # every group in the charts, not the first 10
    _, children = children_of(client, "smoke")
    assert [c.data.tags["group"] for c in children] == ["frozen", "frozen"]

    def config(*overrides: str):
        return load_experiment(SMOKE, [TINY, *overrides]).runs()[0]

    configs = [
        config("paradigm.name=frozen"),
        config("paradigm.name=memory", "reward.weights.search_cost=0.1"),
        config("paradigm.name=memory", "reward.weights.search_cost=0.5"),
        config("paradigm.name=memory", "reward.weights.search_cost=0.5", "seeds=[3]"),
        config("paradigm.name=adapter", "algorithm.name=grpo"),
        config("paradigm.name=adapter", "algorithm.name=ppo"),
    ]
    assert group_labels(configs) == [
        "frozen",
        "memory/search_cost=0.1",
        "memory/search_cost=0.5",
        "memory/search_cost=0.5",  # differs only by seed: the same group, like its config_hash
        "adapter/grpo",
        "adapter/ppo",
    ]


def test_an_existing_experiment_gets_the_model_training_kind(tracking_uri):
    client = mlflow.MlflowClient(tracking_uri)
    client.create_experiment("made-earlier")
    Tracker(tracking_uri).start_run("made-earlier", "a-run").finish()
    assert (
        client.get_experiment_by_name("made-earlier").tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    )


def test_the_base_build_is_its_own_run_and_no_run_waits_for_it(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))  # a cold cache: the build happens now
    run_experiment(load_experiment(SMOKE, [TINY]), Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    (build,) = client.search_runs([client.get_experiment_by_name("builtin-base").experiment_id])
    parents, children = children_of(client, "smoke")
    assert build.info.status == "FINISHED"
    assert build.info.end_time <= min(r.info.start_time for r in parents + children)


_PEAK_PROBE = """
import sys
from experiments.config import load_experiment
from experiments.peak_memory import peak_rss_bytes, reset_peak_rss
from experiments.run import run_experiment
from experiments.tracking import Tracker
from tests.conftest import ROOT, SMOKE, SMOKE_PARAMS, TINY

if not reset_peak_rss():
    print("unsupported")
    sys.exit(0)
ballast = bytearray(2**30)  # 1 GiB touched now, freed before the run
ballast[::4096] = b"x" * len(ballast[::4096])
before = peak_rss_bytes()
del ballast
run_experiment(load_experiment(SMOKE, [TINY]), Tracker(sys.argv[1]), progress=False)
print(before)
"""


def test_peak_memory_is_the_peak_of_each_run_not_of_the_process(tracking_uri, tiny_base):
    """In a process of its own: inside the test session the interpreter already holds gigabytes from
    earlier tests (SmolLM2's weights among them), which drowns the ballast the test is about. The
    run itself adds ~160 MB to a fresh interpreter (its first imports), hence a 1 GiB ballast."""
    probe = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, tracking_uri],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    last = probe.stdout.strip().splitlines()[-1]
    if last == "unsupported":
        pytest.skip("this platform cannot reset the peak resident size (/proc/self/clear_refs)")
    before = float(last)
    client = mlflow.MlflowClient(tracking_uri)
    _, (child,) = children_of(client, "smoke")
    assert child.data.tags["peak_rss_scope"] == "run"
    peak = max(m.value for m in client.get_metric_history(child.info.run_id, "cost/peak_rss_bytes"))
    assert peak < before - 700 * 2**20  # the run did not inherit the ballast's peak


_RETAINED_PROBE = _PEAK_PROBE.replace(
    """ballast = bytearray(2**30)  # 1 GiB touched now, freed before the run
ballast[::4096] = b"x" * len(ballast[::4096])
before = peak_rss_bytes()
del ballast
""",
    """ballast = [bytearray(1000) for _ in range(2**20)]  # ~1 GiB in small blocks, from malloc's heap
kept = ballast[::64]  # a few stay alive, so the heap cannot shrink from its top when the rest is freed
del ballast
before = peak_rss_bytes()
""",
)


def test_memory_an_earlier_run_freed_is_not_in_the_next_runs_peak(tracking_uri, tiny_base):
    """What the process freed but the C library kept (a run's tensors and Python objects, freed in small
    blocks amid live ones) is handed back before a run's peak starts (``release_freed_memory``): without
    it, each SmolLM2 run of a grid logged the GBs of the runs before it."""
    probe = subprocess.run(
        [sys.executable, "-c", _RETAINED_PROBE, tracking_uri],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=600,
    )
    last = probe.stdout.strip().splitlines()[-1]
    if last == "unsupported":
        pytest.skip("this platform cannot reset the peak resident size (/proc/self/clear_refs)")
    client = mlflow.MlflowClient(tracking_uri)
    _, (child,) = children_of(client, "smoke")
    peak = max(m.value for m in client.get_metric_history(child.info.run_id, "cost/peak_rss_bytes"))
    assert peak < float(last) - 700 * 2**20
