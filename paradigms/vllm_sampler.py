"""GRPO's training rollouts sampled by vLLM through TRL's integration (``algorithm.vllm``): a GPU option.

With ``algorithm.vllm`` set to ``colocate`` or ``server``, TRL's ``GRPOTrainer`` runs with
``use_vllm=True``: it builds a ``trl.generation.vllm_generation.VLLMGeneration`` (an engine inside this
process, or a client of a ``trl vllm-serve`` server) and pushes the policy's current weights into it
before each call of the harness's ``rollout_func`` (merged LoRA weights for an adapter). :class:`VLLMSampler`
makes that engine the rollout's :class:`paradigms.agent.Sampler`: every round of
``paradigms.agent.rollout`` (the answer, or the text up to a tool call, then the text after the tool's
reply) is one ``VLLMGeneration.generate`` call over the token ids so far, with the protocol's stop
strings, the round's token budget and the run's learning temperature and top-k. The rounds, the tool
loop, the env mask and the scoring stay the harness's, so the fairness rule holds: only where the
tokens are drawn changes. vLLM's prefix cache serves the round after a tool reply (what
``paradigms.tool_cache`` does for ``generate``). Each agent token's log-probability under vLLM (TRL asks
for processed log-probabilities) goes back to TRL, whose importance-sampling correction
(``vllm_importance_sampling_correction``, on by default) accounts for the engine's numerics differing
from the policy's.

Evaluations keep generating with the policy itself: its weights are what is measured. A run with vLLM is
reproducible only as far as vLLM is (its own random numbers, its own kernels), not bitwise equal to the
same run without it.

Light to import: the config checks :func:`vllm_problem` without torch. vllm itself cannot be installed on
the machine this harness is developed on (its wheels are CUDA builds pinned to ``transformers<5.23``), so
``tests/test_vllm_sampler.py`` drives TRL's trainer with a stand-in for ``VLLMGeneration`` whose tokens
come from the policy's own ``generate``.
"""

from __future__ import annotations

import importlib.util
import math

#: ``algorithm.vllm``'s values: no vLLM, an engine in this process, a ``trl vllm-serve`` server
MODES = ("off", "colocate", "server")


def vllm_problem(mode: str) -> str | None:
    """Why ``algorithm.vllm: mode`` cannot run here (one line naming the fix), or None."""
    if mode == "off" or importlib.util.find_spec("vllm") is not None:
        return None
    return (
        f"{mode} needs the vllm package, which is not installed: `pip install 'trl[vllm]'` (the vLLM "
        f"versions TRL supports) on a machine with a CUDA GPU (docs/real-model.md, Running on a GPU), or "
        f"set algorithm.vllm=off"
    )


class VLLMSampler:
    """A rollout :class:`paradigms.agent.Sampler` over TRL's ``VLLMGeneration`` (``trainer.vllm_generation``).

    Each :meth:`sample` call sets the engine's per-call fields (token budget, temperature, top-k, stop
    strings, and every token of ``vocab_size`` but the tokenizer's pad where the pad is not its end of
    sequence) and generates one completion per sequence; TRL keeps the engine's weights in sync with the
    policy before each rollout.
    """

    def __init__(self, generation, tokenizer, vocab_size: int):
        self.generation = generation
        # as in the policy's own rollout, padding is never sampled unless it doubles as end of sequence
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        banned = pad if pad is not None and pad != eos else None
        self.allowed = None if banned is None else [t for t in range(vocab_size) if t != banned]

    def sample(self, sequences, max_tokens, settings, stops):
        """Per sequence: the new token ids (ending with the stop string's tokens, the end-of-sequence token
        or at ``max_tokens``) and each token's log-probability (NaN where vLLM gave none)."""
        engine = self.generation
        engine.max_completion_length = max_tokens
        engine.temperature = settings.temperature  # 0: greedy, as in the harness's own rollout
        engine.top_k = settings.top_k  # 0: off, in vLLM as in the harness
        engine.generation_kwargs = {"stop": list(stops), "include_stop_str_in_output": True}
        if self.allowed is not None:
            engine.generation_kwargs["allowed_token_ids"] = self.allowed
        _, completions, logprobs, _ = engine.generate(prompts=sequences, images=None, num_generations=1)
        rows = [list(ids) for ids in completions]
        if logprobs is None:  # an engine asked for no log-probabilities
            return rows, [[math.nan] * len(ids) for ids in rows]
        return rows, [[math.nan if top[0] is None else float(top[0]) for top in row] for row in logprobs]


def release_engine(generation) -> None:
    """Let go of the engine TRL built for a run (``trainer.vllm_generation``; None: nothing to do).

    A grid runs its GRPO runs one after another in one process and TRL builds an engine for each: a
    colocated engine would keep its share of the GPU until collected, and a server client its weight-update
    group (TRL closes it only at exit). Untested on a real vLLM (none runs where this was written).
    """
    if generation is None:
        return
    client = getattr(generation, "vllm_client", None)
    if client is not None:
        client.close_communicator()
    if getattr(generation, "llm", None) is not None:
        generation.llm = None
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
