"""GRPO's vLLM option (``algorithm.vllm``, ``paradigms.vllm_sampler``) against a stand-in engine.

vllm cannot be installed here (CUDA wheels pinned to an older transformers), so ``PolicyEngine`` stands in
for TRL's ``VLLMGeneration`` with its interface (the per-call fields TRL sets, ``generate`` over token
ids returning tokens and top-1 log-probabilities, ``sync_weights``) and draws each request's tokens with
the policy's own ``generate``, one request at a time and without padding, as an engine would serve them.
Everything else is real: the harness's rollout and tool loop, TRL's trainer with ``use_vllm=True`` (its
weight syncing, its importance-sampling correction fed the sampler's log-probabilities), the run.
"""

import types

import pytest
import torch
import yaml

from experiments.config import ConfigError, load_experiment
from experiments.run import assemble
from paradigms import agent
from paradigms.agent import GenerationSettings, rollout
from paradigms.rl import grpo
from paradigms.vllm_sampler import VLLMSampler, release_engine, vllm_problem
from tasks.items import Query
from tasks.search import SearchTool
from tests.conftest import ROOT, SMOKE, TINY

NO_VLLM = pytest.mark.skipif(vllm_problem("colocate") is None, reason="vllm is installed here")


class PolicyEngine:
    """TRL's ``VLLMGeneration`` as the rollout uses it, serving requests with ``model.generate``."""

    def __init__(self, model, processing_class, **_):
        self.model, self.tokenizer = model, processing_class
        self.llm = model  # what a colocated engine holds (release_engine lets go of it)
        self.max_completion_length, self.temperature, self.top_k = 16, 1.0, 0
        self.generation_kwargs: dict = {}
        self.requests: list[list[int]] = []
        self.syncs = 0

    def sync_weights(self):
        self.syncs += 1  # the engine is the policy itself: nothing to copy

    @torch.no_grad()
    def generate(self, prompts, images, num_generations):
        assert images is None and num_generations == 1
        stops = tuple(self.generation_kwargs["stop"])
        assert self.generation_kwargs["include_stop_str_in_output"]
        allowed = self.generation_kwargs.get("allowed_token_ids")
        vocabulary = self.model.config.vocab_size
        never = None if allowed is None else sorted(set(range(vocabulary)) - set(allowed))
        completions, logprobs = [], []
        for ids in prompts:
            self.requests.append(list(ids))
            sampling = self.temperature > 0
            output = self.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=self.max_completion_length,
                do_sample=sampling,
                temperature=self.temperature if sampling else None,
                top_k=self.top_k or None,
                top_p=None,
                suppress_tokens=never,
                stopping_criteria=[agent._StopOnStrings(self.tokenizer, len(ids), stops)],
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                return_dict_in_generate=True,
                output_scores=True,
            )
            new = output.sequences[0, len(ids) :].tolist()
            scores = torch.log_softmax(torch.stack(output.scores)[:, 0].float(), -1)  # (T, V): processed
            completions.append(new)
            logprobs.append([[float(scores[t, token])] for t, token in enumerate(new)])
        return prompts, completions, logprobs, None


def test_rounds_through_a_sampler_equal_the_generate_rounds(twice):
    """Same tokens drawn, same episodes: the tool loop, masks and transcript do not depend on who samples;
    each agent token carries its log-probability, each tool token 0.0; the resumed round gets the prefix."""
    model, tokenizer = twice
    tool = SearchTool(("my dog rex .", "my city oslo ."), max_results=1)
    settings = GenerationSettings(max_new_tokens=40, temperature=0.0, top_k=0, max_searches=2)
    queries = [Query("ask my dog ?", True)] * 3 + [Query("ask my city ?", True)]
    notes = [[], ["note my city oslo ."], ["note kalo color red ."], []]
    tools = [tool, tool, tool, None]
    plain = rollout(model, tokenizer, queries, tools, settings, notes)
    engine = PolicyEngine(model, tokenizer)
    sampler = VLLMSampler(engine, tokenizer, model.config.vocab_size)
    sampled = rollout(model, tokenizer, queries, tools, settings, notes, sampler=sampler)
    assert max(e.search_calls for e in sampled) == 2  # three rounds ran
    for before, after in zip(plain, sampled, strict=True):
        assert after.completion_ids == before.completion_ids
        assert after.env_mask == before.env_mask
        assert after.completion == before.completion
        assert after.tool_results == before.tool_results
        assert before.sampling_logprobs is None
        assert len(after.sampling_logprobs) == len(after.completion_ids)
        for logprob, own in zip(after.sampling_logprobs, after.env_mask, strict=True):
            assert (logprob < 0) if own else (logprob == 0.0)
    # one request per round: the prompt, then the prompt and completion up to each tool reply's end
    expected = [e.prompt_ids + e.completion_ids[:cut] for e in sampled for cut in round_starts(e.env_mask)]
    assert sorted(engine.requests) == sorted(expected)


def round_starts(env_mask: list[int]) -> list[int]:
    """Where each generation round of an episode started: 0, and after each tool reply."""
    return [0] + [t for t in range(1, len(env_mask)) if env_mask[t - 1] == 0 and env_mask[t] == 1]


def test_a_sampler_cannot_take_tool_decisions(twice):
    model, tokenizer = twice
    with pytest.raises(ValueError, match="decisions"):
        rollout(
            model,
            tokenizer,
            [Query("ask my dog ?", True)],
            [None],
            GenerationSettings(),
            decisions=[agent.SEARCH],
            sampler=VLLMSampler(PolicyEngine(model, tokenizer), tokenizer, model.config.vocab_size),
        )


def grpo_vllm(mode: str, events: int = 16):
    overrides = [TINY, "paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=2"]
    return load_experiment(SMOKE, [*overrides, f"algorithm.vllm={mode}", f"budget.feedback_events={events}"])


@NO_VLLM
@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_without_vllm_the_config_names_the_field_and_the_install(mode):
    with pytest.raises(
        ConfigError, match=r"^algorithm\.vllm: .*pip install 'trl\[vllm\]'.*algorithm\.vllm=off"
    ):
        grpo_vllm(mode)


def with_vllm_on_grpo_points(path, mode: str, tmp_path):
    """``path``'s experiment with ``algorithm.vllm: mode`` added to its GRPO grid points, as
    docs/real-model.md (Running on a GPU) tells a researcher to do."""
    raw = yaml.safe_load(path.read_text())
    for point in raw["grid"]:
        if point.get("algorithm.name") == "grpo":
            point["algorithm.vllm"] = mode
    edited = tmp_path / path.name
    edited.write_text(yaml.safe_dump(raw))
    return edited


def test_the_documented_way_to_turn_vllm_on_for_a_comparison(tmp_path, monkeypatch):
    """``--set algorithm.vllm=...`` reaches every run, and the runs without GRPO have no such key; the
    docs' route, the key on the GRPO grid points, runs the rest of the grid as it was."""
    path = ROOT / "experiments" / "comparison_smollm2.yaml"
    edited = with_vllm_on_grpo_points(path, "colocate", tmp_path)
    if vllm_problem("colocate") is not None:
        with pytest.raises(ConfigError, match=r"^algorithm\.vllm: colocate needs the vllm package"):
            load_experiment(edited)
    monkeypatch.setattr("experiments.config.vllm_problem", lambda mode: None)
    runs = load_experiment(edited, ["seeds=[0]"]).runs()
    before = load_experiment(path, ["seeds=[0]"]).runs()
    assert len(runs) == len(before)
    grpo_runs = [c for c in runs if c.algorithm.name == "grpo"]
    assert len(grpo_runs) >= 2 and all(c.algorithm.vllm == "colocate" for c in grpo_runs)
    others = [(a, b) for a, b in zip(runs, before, strict=True) if a.algorithm.name != "grpo"]
    assert others and all(a == b for a, b in others)


def test_the_sampler_bans_padding_as_the_policys_rollout_does(twice):
    """Where the pad is not the end of sequence (the builtin tokenizers), the engine is told every token
    but the pad; where it is (SmolLM2's), it is told nothing."""
    model, tokenizer = twice
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    engine = PolicyEngine(model, tokenizer)
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, top_k=0)
    VLLMSampler(engine, tokenizer, 10).sample([[1, 5, 6]], 4, settings, ("?",))
    assert engine.generation_kwargs["allowed_token_ids"] == [
        t for t in range(10) if t != tokenizer.pad_token_id
    ]
    same = types.SimpleNamespace(pad_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    assert VLLMSampler(engine, same, 10).allowed is None


def test_release_engine_lets_go_of_a_colocated_engine_and_closes_a_server_client():
    class Client:
        closed = 0

        def close_communicator(self):
            self.closed += 1

    colocated, served = types.SimpleNamespace(llm=object()), types.SimpleNamespace(vllm_client=Client())
    release_engine(colocated)
    release_engine(served)
    release_engine(None)
    assert colocated.llm is None and served.vllm_client.closed == 1


def test_grpo_trains_on_the_engines_samples(tiny_base, monkeypatch):
    """TRL syncs the engine before each step's rollout, the rollout samples through it, and TRL's
    importance-sampling correction, fed the engine's log-probabilities, finds the engine and the policy
    agree (the stand-in is the policy); evaluations generate with the policy, not the engine."""
    import trl.trainer.grpo_trainer as trl_grpo

    engines: list[PolicyEngine] = []

    def engine(**kwargs):
        engines.append(PolicyEngine(**kwargs))
        return engines[-1]

    monkeypatch.setattr(trl_grpo, "VLLMGeneration", engine)
    flushed: list[dict] = []
    flush = grpo.GRPO.flush
    monkeypatch.setattr(
        grpo.GRPO, "flush", lambda self, metrics: (flushed.append(metrics), flush(self, metrics))[1]
    )
    monkeypatch.setattr("experiments.config.vllm_problem", lambda mode: None)
    logged: list[dict] = []
    report = grpo._ReportSteps.on_log
    monkeypatch.setattr(
        grpo._ReportSteps,
        "on_log",
        lambda self, args, state, control, logs=None, **kw: (
            logged.append(dict(logs or {})),
            report(self, args, state, control, logs, **kw),
        )[1],
    )
    parts = assemble(grpo_vllm("colocate").runs()[0], progress=False)
    parts.session.on_feedback = lambda report: None  # no evaluations: only training rolls out here
    parts.paradigm.train(parts.session)
    assert parts.session.events == 16
    (only,) = engines
    assert only.syncs == 2 and len(only.requests) >= 16  # 2 steps of 4 queries x 2 responses
    steps = [logs for logs in logged if "loss" in logs]  # (the last log is the training summary)
    assert len(steps) == 2
    # log-probabilities aligned with their tokens, tool tokens left out: a token off would differ by
    # whole nats; what is left is the pad's probability (~1e-4), which the engine, never sampling the
    # pad, renormalizes away and the policy's log-probabilities keep
    for logs in steps:
        assert logs["sampling/sampling_logp_difference/max"] < 1e-2
        assert abs(logs["sampling/importance_sampling_ratio/mean"] - 1) < 1e-2
    reported = [m for m in flushed if "train/policy_loss" in m]  # what the run logs to MLflow
    assert len(reported) == 2 and all(
        abs(m["train/sampling/importance_sampling_ratio/mean"] - 1) < 1e-2 for m in reported
    )
    assert only.llm is None  # let go of once the run's training ended
