"""Continual learning (paradigms/rl/continual.py): each term against hand-computed values, the
general data's separation from the general probe, the config rules, and every mechanism end to end."""

import math

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from experiments import metrics as m
from experiments.cli import app
from experiments.config import ConfigError, load_experiment
from experiments.run import assemble, run_experiment
from experiments.tracking import Tracker
from paradigms.agent import Episode
from paradigms.rl.continual import (
    Continual,
    ContinualSettings,
    GeneralData,
    UserReplay,
    ewc_penalty,
    l2sp_penalty,
    normalize_fisher,
    replay_nll,
    token_kl,
)
from tasks import probes
from tests.conftest import SMOKE, TINY


# -- the terms, by hand ------------------------------------------------------------------------------
def test_l2sp_is_half_the_squared_distance_to_the_anchor():
    params = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchors = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    # 1/2 (1 + 4 + 0.25)
    assert l2sp_penalty(params, anchors).item() == pytest.approx(2.625)


def test_ewc_weights_each_squared_displacement_by_its_fisher():
    params = [torch.tensor([1.0, 2.0]), torch.tensor([[0.5]])]
    anchors = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    fisher = [torch.tensor([2.0, 0.5]), torch.tensor([[4.0]])]
    # 1/2 (2 * 1 + 0.5 * 4 + 4 * 0.25)
    assert ewc_penalty(params, anchors, fisher).item() == pytest.approx(2.5)
    # with a Fisher of ones EWC is L2-SP
    ones = [torch.ones_like(p) for p in params]
    assert ewc_penalty(params, anchors, ones).item() == pytest.approx(l2sp_penalty(params, anchors).item())


def test_the_fisher_is_scaled_to_mean_one():
    fisher = normalize_fisher([torch.tensor([1.0, 3.0]), torch.tensor([0.0])])
    # total 4 over 3 elements: scale 3/4
    assert torch.allclose(fisher[0], torch.tensor([0.75, 2.25]))
    assert torch.allclose(fisher[1], torch.tensor([0.0]))
    assert normalize_fisher([torch.zeros(2)])[0].tolist() == [0.0, 0.0]


def test_token_kl_is_the_exact_kl_over_the_vocabulary_at_masked_positions():
    p = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]))  # (B=1, C=2, V=2)
    q = torch.log(torch.tensor([[[0.25, 0.75], [0.1, 0.9]]]))
    mask = torch.tensor([[1.0, 0.0]])  # the second position is tool output or padding
    # KL(p || q) = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)
    assert token_kl(p, q, mask).item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    # KL(q || p) = 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5): the distillation direction
    assert token_kl(q, p, mask).item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)
    assert token_kl(p, p, torch.ones(1, 2)).item() == pytest.approx(0.0, abs=1e-7)


def test_replay_nll_is_the_mean_negative_log_likelihood_of_masked_tokens():
    logp = torch.log(torch.tensor([[0.5, 0.25], [1.0, 0.01]]))  # (B=2, C=2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # -(ln 0.5 + ln 0.25 + ln 1) / 3 = 3 ln 2 / 3
    assert replay_nll(logp, mask).item() == pytest.approx(math.log(2), abs=1e-6)


def test_the_replay_share_sets_how_many_sequences_are_replayed():
    continual = Continual(ContinualSettings(replay=0.25), host=None)
    assert continual.replay_count(32) == 11  # ceil(1/3 * 32): 11 of 43 sequences, about a quarter
    assert Continual(ContinualSettings(), host=None).replay_count(32) == 0


# -- the data --------------------------------------------------------------------------------------
def test_general_data_never_asks_a_fact_with_the_probes_held_out_instruction(tiny_base):
    from paradigms.backbone import load_backbone

    tokenizer = load_backbone(tiny_base, "cpu").tokenizer
    prompts = [e.prompt for e in GeneralData(tokenizer, seed=0).draw(3000)]
    probe = [f"use {item.wanted_format} {item.query.question}" for item in probes.general_probe()]
    assert not [p for p in prompts for held_out in probe if held_out in p]
    # the draw does ask the probe's facts (under other instructions): it is general data
    questions = {item.query.question for item in probes.general_probe()}
    assert sum(any(q in p for q in questions) for p in prompts) == len(prompts)


def test_user_replay_keeps_only_exactly_right_responses():
    replay = UserReplay(seed=0)
    assert replay.draw(3) == []
    right, wrong_format, searched_only = (
        Episode("p", [1], [5, 6], [1, 1]),
        Episode("p", [1], [5, 7], [1, 1]),
        Episode("p", [1], [9], [0]),
    )
    replay.observe([right, wrong_format, searched_only], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0])
    assert replay.episodes == [right]
    assert replay.draw(2) == [right, right]


# -- bound to a real paradigm --------------------------------------------------------------------------
def tiny_parts(paradigm: str, algorithm: str, *continual: str):
    overrides = [TINY, f"paradigm.name={paradigm}", f"algorithm.name={algorithm}", "task.suite=preferences"]
    config = load_experiment(SMOKE, [*overrides, *continual]).runs()[0]
    return assemble(config, progress=False)


@pytest.mark.parametrize("paradigm", ["full_ft", "adapter"])
def test_ewc_starts_at_the_anchor_with_a_mean_one_fisher(paradigm, tiny_base):
    parts = tiny_parts(paradigm, "reinforce", "continual.regularizer=ewc", "continual.fisher_samples=4")
    continual = parts.paradigm.learner.continual
    continual.start(seed=0)
    count = sum(f.numel() for f in continual.fisher)
    assert sum(float(f.sum()) for f in continual.fisher) / count == pytest.approx(1.0, rel=1e-4)
    parameters = parts.paradigm.parameters()
    assert ewc_penalty(parameters, continual.anchors, continual.fisher).item() == 0.0
    assert continual.flops > 0  # the Fisher's passes are training compute
    with torch.no_grad():  # (a fresh LoRA's A gets no Fisher: with B = 0 it cannot change the output)
        for parameter in parameters:
            parameter.add_(0.1)
    assert ewc_penalty(parameters, continual.anchors, continual.fisher).item() > 0


def test_the_update_loss_mixes_with_replay_in_the_configured_share(tiny_base):
    parts = tiny_parts("full_ft", "reinforce", "continual.replay=0.25", "continual.distill=0.5")
    continual = parts.paradigm.learner.continual
    continual.start(seed=0)
    items = parts.session.next_items(2)
    interaction = parts.session.interact(parts.paradigm.policy, parts.paradigm.tokenizer, items, group_size=2)
    batch = parts.paradigm.learner.collate(interaction)
    total, terms = continual.loss(torch.tensor(2.0), batch)
    assert set(terms) == {m.TRAIN_LOSS_REPLAY, m.TRAIN_LOSS_DISTILL}
    # the policy is still the base: nothing to distill back
    assert terms[m.TRAIN_LOSS_DISTILL] == pytest.approx(0.0, abs=1e-6)
    expected = 0.75 * 2.0 + 0.25 * terms[m.TRAIN_LOSS_REPLAY] + 0.5 * terms[m.TRAIN_LOSS_DISTILL]
    assert total.item() == pytest.approx(expected, rel=1e-5)


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("paradigm", ["frozen", "oracle", "memory"])
def test_paradigms_that_keep_their_weights_refuse_a_continual_section(paradigm):
    with pytest.raises(ConfigError, match=r"^continual: applies only to paradigms that change weights"):
        load_experiment(SMOKE, [f"paradigm.name={paradigm}", "continual.replay=0.2"])
    load_experiment(SMOKE, [f"paradigm.name={paradigm}", "continual.replay=0"])  # the default is fine


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("continual.replay=1", "continual.replay"),
        ("continual.replays=0.2", "did you mean 'continual.replay'"),
        ("continual.regularizer=fisher", "continual.regularizer"),
        ("continual.distill=-1", "continual.distill"),
        ("continual.strength=0", "continual.strength: 0 switches the regularizer off"),
    ],
)
def test_bad_continual_settings_are_one_line_naming_the_field(override, fragment):
    overrides = ["paradigm.name=full_ft", "algorithm.name=grpo", override]
    if override.startswith("continual.strength"):
        overrides.append("continual.regularizer=l2sp")
    with pytest.raises(ConfigError) as caught:
        load_experiment(SMOKE, overrides)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    result = CliRunner().invoke(app, ["config", "show", str(SMOKE), *[f"--set={o}" for o in overrides]])
    assert result.exit_code == 2


REGULARIZER = m.TRAIN_LOSS_REGULARIZER


# -- end to end -----------------------------------------------------------------------------------------
MECHANISMS = [
    ("full_ft", "grpo", ["continual.regularizer=ewc", "continual.fisher_samples=8"], REGULARIZER),
    ("full_ft", "grpo", ["continual.replay=0.2"], m.TRAIN_LOSS_REPLAY),
    ("full_ft", "reinforce", ["continual.regularizer=l2sp"], m.TRAIN_LOSS_REGULARIZER),
    ("full_ft", "ppo", ["continual.distill=1.0", "continual.distill_prompts=4"], m.TRAIN_LOSS_DISTILL),
    ("full_ft", "sft", ["continual.regularizer=kl"], m.TRAIN_LOSS_REGULARIZER),
    ("adapter", "grpo", ["continual.regularizer=kl"], m.TRAIN_LOSS_REGULARIZER),
    ("adapter", "reinforce", ["continual.replay=0.3"], m.TRAIN_LOSS_REPLAY),
]


@pytest.mark.parametrize("paradigm, algorithm, continual, metric", MECHANISMS)
def test_each_mechanism_runs_end_to_end_and_logs_its_term(
    paradigm, algorithm, continual, metric, tracking_uri, tiny_base
):
    experiment = load_experiment(
        SMOKE,
        [
            TINY,
            f"paradigm.name={paradigm}",
            f"algorithm.name={algorithm}",
            "algorithm.learning_rate=0.01",
            "task.suite=preferences",
            *continual,
        ],
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, metric)
    assert history and all(math.isfinite(point.value) for point in history)
    for override in continual:
        key, value = override.split("=")
        assert child.data.params[key] == value
    assert child.data.metrics[m.TRAIN_FLOPS] > 0


def test_run_names_carry_the_active_mechanisms():
    names = [
        r.run_name()
        for r in load_experiment(SMOKE, ["paradigm.name=full_ft", "algorithm.name=grpo", "grid=[{}]"]).runs()
    ]
    assert names == ["full_ft-grpo-default-s0"]
    config = load_experiment(
        SMOKE,
        [
            "paradigm.name=full_ft",
            "algorithm.name=grpo",
            "continual.replay=0.25",
            "continual.replay_source=user",
            "continual.regularizer=ewc",
            "continual.distill=0.5",
        ],
    ).runs()[0]
    assert config.run_name() == "full_ft-grpo-userreplay0.25+ewc+distill-default-s0"


# -- on the real base (slow) --------------------------------------------------------------------------------
@pytest.mark.slow
def test_l2sp_keeps_what_plain_full_fine_tuning_forgets(tracking_uri, real_base):
    """experiments/continual.yaml's headline, on its three seeds: plain full_ft + GRPO forgets on both
    probes, L2-SP at strength 1 forgets much less and still learns the user.

    Means measured on two builds of the same base recipe (results/continual/, an earlier host;
    results/continual-rebuilt/, this project's CI host): plain knowledge 0.31 / 0.20, instruction
    override 0.58 / 0.68; L2-SP 0.02 / 0.03 and 0.00 / 0.28, personal accuracy 1.00 / 0.88. One seed
    alone is not the claim: seed 0's plain knowledge forgetting was 0.22 on one build, 0.11 on the other.
    """
    experiment_file = SMOKE.parent / "continual.yaml"
    grid = "grid=[{continual.regularizer: none}, {continual.regularizer: l2sp}]"
    results = run_experiment(load_experiment(experiment_file, [grid]), Tracker(tracking_uri), progress=False)
    plain = [r.final for r in results if "-l2sp-" not in r.name]
    l2sp = [r.final for r in results if "-l2sp-" in r.name]
    assert len(plain) == len(l2sp) == 3

    def mean(runs, metric):
        return sum(r[metric] for r in runs) / len(runs)

    assert mean(plain, m.FORGETTING) >= 0.15 and mean(plain, m.INSTRUCTION_FORGETTING) >= 0.25
    assert mean(l2sp, m.FORGETTING) <= mean(plain, m.FORGETTING) - 0.1
    assert mean(l2sp, m.INSTRUCTION_FORGETTING) <= mean(plain, m.INSTRUCTION_FORGETTING) - 0.2
    assert mean(l2sp, m.PERSONAL_ACCURACY) >= 0.8
