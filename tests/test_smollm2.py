"""SmolLM2-135M-Instruct, the offline real chat model, as a backbone (slow: minutes on a CPU).

What a real model must show for the comparison to mean something: it reads the user's fact from a
note (the oracle far above the floor); memory learns the user's facts to 0.8 without touching a weight;
an adapter trained with GRPO learns the user's format habits (it does not yet: an expected failure,
with the measured reason); and a search call's result reaches
the model as a masked tool turn.
"""

import mlflow
import pytest

from experiments.config import load_experiment
from experiments.run import assemble, run_experiment
from experiments.tracking import Tracker
from paradigms.agent import SEARCH, GenerationSettings, rollout
from paradigms.backbone import weights_digest
from tasks.items import Query
from tasks.protocols import Statement
from tasks.search import SearchTool
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SMOLLM2 = ROOT / "experiments" / "smollm2_checks.yaml"


def _final(tracking_uri: str, experiment: str) -> dict[str, dict]:
    """Each finished child run's last value of every metric, by run name."""
    client = mlflow.MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert all(r.info.status == "FINISHED" for r in children), [r.data.tags.get("error") for r in children]
    return {r.info.run_name: r.data.metrics for r in children}


def _history(tracking_uri: str, run_id: str, metric: str) -> list[tuple[int, float]]:
    client = mlflow.MlflowClient(tracking_uri)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


def test_the_oracle_reads_what_the_frozen_model_cannot_know(tracking_uri):
    experiment = load_experiment(
        SMOLLM2,
        ["name=smollm2-controls", "task.suite=user_facts", "budget.feedback_events=4", "evaluation.every=4"],
    )
    experiment = experiment.model_copy(
        update={
            "grid": [{"paradigm.name": "frozen"}, {"paradigm.name": "oracle", "paradigm.notes": "relevant"}]
        }
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    final = _final(tracking_uri, "smollm2-controls")
    frozen, oracle = final["frozen-user_facts-s0"], final["oracle-user_facts-s0"]
    assert oracle["eval/personal_accuracy"] - frozen["eval/personal_accuracy"] >= 0.5, (oracle, frozen)
    assert frozen["eval/general_accuracy"] == 1.0  # the kept general probe: what the untouched model knows


def test_memory_learns_the_users_facts_to_0_8_with_its_weights_untouched():
    """Memory reaches 0.8 personal accuracy on ``user_facts`` within 200 events, weights bitwise unchanged
    (the oracle showing the one relevant note is the ceiling of teaching through the prompt: 0.80-0.92
    on seeds 0-4 with the chat protocol's notes section; docs/real-model.md)."""
    facts = ["task.suite=user_facts", "budget.feedback_events=200"]
    parts = assemble(
        load_experiment(SMOLLM2, [*facts, "paradigm.name=memory", "paradigm.top_k=1"]).runs()[0],
        progress=False,
    )
    before = weights_digest(parts.paradigm.model)
    untrained = parts.evaluator.evaluate(parts.paradigm)["eval/personal_accuracy"]
    parts.paradigm.train(parts.session)
    learned = parts.evaluator.evaluate(parts.paradigm)["eval/personal_accuracy"]
    assert parts.session.events == 200
    assert learned >= 0.8 and learned - untrained >= 0.4, (untrained, learned)
    assert weights_digest(parts.paradigm.model) == before


#: Feedback events of imitation before GRPO (``algorithm.warm_start_events``): GRPO alone cannot
#: learn a habit SmolLM2 never samples (no JSON in 128 answers at T=1, even with the formats named
#: in the system message: benchmarks/format_sampling.py), so format compliance stayed 0.33 at every
#: evaluation of 256 GRPO events (docs/real-model.md).
WARM_START_EVENTS = 64


def test_adapter_grpo_after_a_warm_start_learns_and_keeps_the_users_format_habits(tracking_uri):
    """Measured (seed 0): format compliance 0.33 -> 1.00 at the warm start's end (64 events), 1.00 at
    128, 192 and 256 under GRPO."""
    experiment = load_experiment(
        SMOLLM2,
        [
            "name=smollm2-grpo",
            "task.suite=preferences",
            "paradigm.name=adapter",
            "algorithm.name=grpo",
            f"algorithm.warm_start_events={WARM_START_EVENTS}",
        ],
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    [run] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smollm2-grpo").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    curve = dict(_history(tracking_uri, run.info.run_id, "eval/format_compliance"))
    last = max(curve)
    assert curve[last] - curve[0] >= 0.2, curve
    assert curve[last] >= curve[WARM_START_EVENTS] - 0.1, curve  # GRPO keeps what the imitation taught
    assert last > WARM_START_EVENTS and _history(tracking_uri, run.info.run_id, "train/policy_loss")


def test_a_search_result_reaches_the_model_as_a_masked_tool_turn():
    experiment = load_experiment(SMOLLM2, ["task.suite=user_facts"])
    [config] = experiment.runs()[:1]
    parts = assemble(config, progress=False)
    model, tokenizer, protocol = parts.paradigm.model, parts.paradigm.tokenizer, parts.paradigm.protocol
    tool = SearchTool.over([Statement("my", "dog", "rex"), Statement("my", "city", "lima")], protocol, 1)
    [episode] = rollout(
        model,
        tokenizer,
        [Query("ask my dog ?", True)],
        [tool],
        GenerationSettings(temperature=0.0, max_new_tokens=48),
        decisions=[SEARCH],  # the search is forced; the model writes the call itself
        protocol=protocol,
    )
    assert episode.search_calls == 1
    reply = protocol.tool_reply(episode.tool_results[0], tokenizer)
    masked = [t for t, keep in zip(episode.completion_ids, episode.env_mask, strict=True) if not keep]
    assert masked == tokenizer(reply, add_special_tokens=False)["input_ids"]
    assert reply.startswith("<|im_end|>\n<|im_start|>tool\n")
