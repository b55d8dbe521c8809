"""Shared fixtures: a temporary MLflow store per test, the tiny builtin base, offline hub."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"
TINY = "backbone=builtin:tiny"
#: The params a run of experiments/smoke.yaml logs (its resolved config flattened with dots, DESIGN.md's
#: contract), pinned: moving a setting between modules must change none of them, nor a default.
SMOKE_PARAMS = {
    "task.suite": "default",
    "task.path": None,
    "task.holdout": 0.2,
    "task.search": True,
    "task.feedback": "text",
    "task.search_results": 2,
    "task.shared_formats": 0.0,
    "task.max_searches": 2,
    "task.batch_size": 4,
    "task.users": "evaluation",
    "paradigm.name": "frozen",
    "paradigm.tool_policy.name": "none",
    "paradigm.tool_policy.epsilon": 0.2,
    "paradigm.tool_policy.epsilon_decay": 0.97,
    "paradigm.tool_policy.min_epsilon": 0.0,
    "paradigm.tool_policy.min_tries": 10,
    "paradigm.tool_policy.learning_rate": 0.05,
    "algorithm.name": "none",
    "reward.weights.correctness": 1.0,
    "reward.weights.format": 0.5,
    "reward.weights.tool_efficiency": 0.2,
    "reward.weights.search_cost": 0.1,
    "budget.feedback_events": 16,
    "evaluation.every": 8,
    "evaluation.general_items": 12,
    "evaluation.background": True,
    "generation.max_new_tokens": 32,
    "generation.temperature": 1.0,
    "generation.eval_temperature": 0.0,
    "generation.top_k": 0,
    "continual.replay": 0.0,
    "continual.replay_source": "general",
    "continual.regularizer": "none",
    "continual.strength": 1.0,
    "continual.distill": 0.0,
    "continual.distill_prompts": 16,
    "continual.fisher_samples": 64,
    "backbone": "builtin",
    "protocol": "auto",
    "device": "auto",
    "threads": 0,
    "dtype": "float32",
    "seed": 0,
    "tuned_from": "",
}
#: Its config hash (every param but the seed): runs before and after a refactoring stay comparable.
SMOKE_CONFIG_HASH = "0a594e0af7e4"


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store in a temp dir, also exported for subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("HARNESS_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The seconds-long builtin base (same code path as the real one, not competent)."""
    from experiments.base import ensure_base

    return ensure_base("builtin:tiny", progress=False)


@pytest.fixture(scope="session")
def tiny(tiny_base):
    """The tiny builtin base loaded in eval mode, and its tokenizer (rollouts only: never trained)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_base).eval(), AutoTokenizer.from_pretrained(tiny_base)


@pytest.fixture(scope="session")
def real_base() -> Path:
    """The real builtin base (built once per cache, minutes); only slow tests use it."""
    from experiments.base import ensure_base

    return ensure_base("builtin", progress=False)


@pytest.fixture(scope="session")
def oversearch_base() -> Path:
    """The real base with a needless-search habit on ``home`` questions (built once per cache, minutes)."""
    from experiments.base import ensure_base

    return ensure_base("builtin:oversearch", progress=False)


@pytest.fixture(scope="session")
def twice():
    """A tiny Llama of the builtin recipe overfit to search twice before answering (seconds to build)."""
    import torch

    from paradigms.builtin.build import new_model
    from paradigms.builtin.recipe import TINY_RECIPE
    from paradigms.builtin.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = new_model(TINY_RECIPE, tokenizer)
    target = (
        "<search> my dog </search> <result> my dog rex . </result> "
        "<search> my city </search> <result> my city oslo . </result> <answer> { answer : rex } </answer>"
    )
    ids = tokenizer(f"tools search ask my dog ? {target}", return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def chat_twice():
    """The tiny chat model (a one-layer Llama, ChatML) overfit to call the search tool twice, its
    tokenizer and the tool (seconds to build)."""
    from tests.chat_model import chat_tokenizer, tiny_chat_model
    from tests.rollout_ways import overfit_to_search_twice

    tokenizer = chat_tokenizer()
    model, tool = overfit_to_search_twice(tiny_chat_model(tokenizer), tokenizer)
    return model, tokenizer, tool


def metric_histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of run ``run_id`` but the machine's (``experiments.metrics.measures_the_machine``:
    seconds, memory, latencies, which differ between any two runs), as its (step, value) history."""
    from experiments.metrics import measures_the_machine

    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
        if not measures_the_machine(key)
    }
