"""Meta-learned adapter start: the Reptile step against hand-computed values, the disjoint user ranges,
harness meta-train on smoke.yaml (files, MLflow run, metrics) and an adapter run starting from it."""

import json

import mlflow
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from experiments import metrics as m
from experiments.cli import app
from experiments.config import ConfigError, load_experiment
from experiments.run import assemble
from paradigms.meta import MetaSettings, meta_lr_at, reptile_step
from tasks.suites import SUITES
from tasks.users import META_USER_SEED_START, TUNING_USER_SEED_START, make_user, meta_user_seeds
from tests.conftest import SMOKE, TINY

META = [
    TINY,
    "paradigm.name=adapter",
    "task.suite=preferences",
    "meta.iterations=2",
    "meta.users=3",
    "meta.inner_events=16",
]


def test_reptile_step_matches_hand_computed_values():
    start = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([[0.0, 4.0]])}
    adapted = {"a": torch.tensor([3.0, 2.0]), "b": torch.tensor([[1.0, 0.0]])}
    moved = reptile_step(start, adapted, 0.25)
    assert torch.equal(moved["a"], torch.tensor([1.5, -1.0]))  # 1 + .25 * 2, -2 + .25 * 4
    assert torch.equal(moved["b"], torch.tensor([[0.25, 3.0]]))  # 0 + .25 * 1, 4 + .25 * -4
    assert torch.equal(reptile_step(start, adapted, 1.0)["a"], adapted["a"])
    assert torch.equal(start["a"], torch.tensor([1.0, -2.0]))  # inputs untouched


def test_meta_lr_anneals_linearly():
    settings = MetaSettings(iterations=5, meta_lr=1.0, meta_lr_final=0.2)
    assert [round(meta_lr_at(settings, i), 6) for i in range(5)] == [1.0, 0.8, 0.6, 0.4, 0.2]
    assert meta_lr_at(MetaSettings(iterations=1, meta_lr=0.5), 0) == 0.5


def test_meta_users_are_never_evaluated_users():
    meta = set(meta_user_seeds(1000))
    assert min(meta) == META_USER_SEED_START and len(meta) == 1000
    # every seed a run may evaluate is below META_USER_SEED_START (below TUNING_USER_SEED_START, in
    # fact: the seeds between are tuning users'): the config refuses the others
    assert load_experiment(SMOKE, [f"seeds=[{TUNING_USER_SEED_START - 1}]"]).runs()[0].seed < min(meta)
    tuning = load_experiment(SMOKE, ["task.users=tuning", f"seeds=[{META_USER_SEED_START - 1}]"])
    assert tuning.runs()[0].seed < min(meta)
    with pytest.raises(ConfigError, match="seed"):
        load_experiment(SMOKE, [f"seeds=[{META_USER_SEED_START}]"])
    # the users themselves differ, not only their seeds' numbers
    suite = SUITES["preferences"]
    assert suite.user(META_USER_SEED_START) == make_user(META_USER_SEED_START)
    assert make_user(META_USER_SEED_START).seed not in range(100)


def test_meta_train_saves_a_start_logs_a_meta_run_and_an_adapter_starts_from_it(
    tracking_uri, tiny_base, tmp_path
):
    out = tmp_path / "start"
    args = ["meta-train", str(SMOKE), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, [*args, *[a for o in META for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    info = json.loads((out / "meta.json").read_text())
    assert info["user_seeds"] and all(s >= META_USER_SEED_START for s in info["user_seeds"])
    assert info["feedback_events"] == 2 * 16
    assert info["task"]["suite"] == "preferences" and info["task"]["shared_formats"] == 0.0

    client = mlflow.MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("smoke").experiment_id], "tags.kind = 'meta'")
    assert run.info.status == "FINISHED"
    for name in (m.META_LR, m.META_INNER_REWARD_LAST, m.META_STEP_NORM):
        assert name in run.data.metrics, name
    assert run.data.params["meta.iterations"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "meta_init")}
    assert "meta_init/adapter_model.safetensors" in artifacts

    config = load_experiment(SMOKE, [TINY, "paradigm.name=adapter", f"paradigm.init={out}"]).runs()[0]
    policy = assemble(config, progress=False).paradigm.policy
    saved = load_file(str(out / "adapter_model.safetensors"))
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert len(saved) == len(trainable)
    for name, tensor in saved.items():
        match = [p for n, p in trainable.items() if n.replace(".default", "") == name]
        assert len(match) == 1 and torch.equal(match[0].detach(), tensor), name
    assert any(t.abs().sum() > 0 for n, t in saved.items() if "lora_B" in n)  # moved off B = 0


def test_bad_starts_and_bad_meta_configs_exit_2(tracking_uri, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        app, ["run", str(SMOKE), "--set", "paradigm.name=adapter", "--set", f"paradigm.init={tmp_path}"]
    )
    assert missing.exit_code == 2 and "paradigm.init" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    not_adapter = runner.invoke(app, ["meta-train", str(SMOKE), "--out", str(tmp_path / "x")])
    assert not_adapter.exit_code == 2 and "paradigm.name" in not_adapter.output
    typo = runner.invoke(
        app,
        ["meta-train", str(SMOKE), "--set", "paradigm.name=adapter", "--set", "meta.iteratoins=3"],
    )
    assert typo.exit_code == 2 and "meta.iterations" in typo.output
    assert mlflow.MlflowClient(tracking_uri).search_experiments(filter_string="name = 'smoke'") == []
