"""What an evaluation's answering is made of (prompt prefill against decoding steps, padding, rows
that had already ended), and what computing only the open rows, or reading the shared prompt prefix
once, saves.

The evaluation share (``benchmarks/eval_share.py``) says how much of a run evaluating takes; this says
where an evaluation's ``generate`` time goes. One run of the selected arm is assembled (default
``adapter:grpo`` of the backbone's comparison, seed 0, one torch thread) and its untouched policy
evaluated ``--repeats`` times each way, alternating, without the answer cache (``--trained``: the run
is executed whole first and its final policy evaluated, as at a run's last evaluation). The two ways
are a rollout keyword off and on (``--way``): ``open_rows`` (default), greedy decoding running every row
until the batch's last one ends (``generate``'s way, ``rollout(drop_ended_rows=False)``) against
computing only the open rows (``paradigms.open_rows``); ``shared_prefix``, every row prefilling its
whole prompt (``rollout(share_prefix=False)``) against reading the prefix all rows share once
(``paradigms.shared_prefix``). Both savings are on by default, and the way not compared stays on.
Every ``generate`` call is recorded from outside (``paradigms.agent._generate`` wrapped, forward hooks
on the model the call runs and on its input embeddings):

- ``rows``, ``width`` (the left-padded batch), ``prompt_tokens`` (its real, unpadded tokens), the
  ``budget`` of new tokens and the ``steps`` it ran;
- ``prefill_seconds`` (forward passes over more than one position: the prompts, or what a carried
  cache leaves, and a shared prefix's one-row pass) and ``decode_seconds`` (one-position passes), the
  rest of the call being ``generate``'s own work (logits processors, stopping criteria, bookkeeping),
  and ``prefill_positions_fed`` (the positions those passes read);
- ``row_steps_run`` (rows x steps: ``generate`` runs every row until the last one ends),
  ``row_steps_computed`` (the rows the model computed a next token for: the prefill's, then each
  decoding step's) and ``row_steps_needed`` (each row's tokens up to its end, the end-of-sequence token
  counted);

and the KL's passes (``experiments.evaluation.kl_to_reference``) are timed on their own. ``same_metrics``
and ``same_episodes`` say whether the two ways gave the same evaluation (wall time, memory and
retrieval latencies left out) and the same episodes, at every repeat. Then, once, the premise of the
way compared, on the first call's prompts. ``open_rows``: are a row's logits the same bits when the
batch holds only some of its rows? The prompts are prefilled whole and as every other row, and one
decoding step run from the whole cache and from its rows' part (``rows_independent``: both
bit-identical, with the largest difference). ``shared_prefix``: how far the first step's logits move
when the prefix is read once (``prefix_logits``: bit-identical or not, the largest difference, whether
every row's argmax is the same). Timings are ratios within one process on a shared machine; the
1-minute load average is kept.

    python benchmarks/eval_decoding.py --backbone smollm2 --repeats 2 \
        --out benchmarks/results/eval_decoding_smollm2.json
    python benchmarks/eval_decoding.py --backbone smollm2 --arms adapter:grpo full_ft:grpo --trained \
        --repeats 1 --set budget.feedback_events=8 --set evaluation.every=8 \
        --out benchmarks/results/eval_decoding_smollm2_trained.json
    python benchmarks/eval_decoding.py --arms full_ft:grpo adapter:grpo --trained --repeats 3 \
        --out benchmarks/results/eval_decoding.json
    python benchmarks/eval_decoding.py --way shared_prefix --backbone smollm2 --repeats 2 \
        --out benchmarks/results/shared_prefix_smollm2.json
    python benchmarks/eval_decoding.py --way shared_prefix --backbone smollm2 --arms adapter:grpo \
        full_ft:grpo --trained --repeats 1 --set budget.feedback_events=8 --set evaluation.every=8 \
        --out benchmarks/results/shared_prefix_smollm2_trained.json
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from contextlib import contextmanager

import eval_batching
import eval_share
import torch

from experiments import evaluation, metrics
from experiments.run import assemble
from paradigms import agent, open_rows, shared_prefix, tool_cache
from paradigms import session as session_module

#: ``--way``: the rollout keyword each comparison turns off and on.
WAYS = {"open_rows": "drop_ended_rows", "shared_prefix": "share_prefix"}


def _positions(args, kwargs) -> int:
    """How many positions a forward pass reads (its ``input_ids``' or ``inputs_embeds``' width)."""
    tensor = kwargs.get("input_ids")
    if tensor is None:
        tensor = kwargs.get("inputs_embeds", args[0] if args else None)
    return int(tensor.shape[1])


@contextmanager
def _recording(calls: list[dict], first_inputs: list):
    """Wrap ``agent._generate`` for the block: each call appends its record to ``calls``; the first
    call's model, left-padded ``input_ids`` and mask are kept in ``first_inputs``."""
    original = agent._generate

    def recorded(model, tokenizer, active, sequences, budget, *args, **kwargs):
        width = max(len(s) for s in sequences)
        call = {
            "rows": len(sequences),
            "width": width,
            "prompt_tokens": sum(len(s) for s in sequences),
            "budget": budget,
            "prefill_seconds": 0.0,
            "decode_seconds": 0.0,
        }
        started: list[float] = []

        def before(module, args, kwargs):
            started.append(time.perf_counter())

        def after(module, args, kwargs, output):
            key = "prefill_seconds" if _positions(args, kwargs) > 1 else "decode_seconds"
            call[key] += time.perf_counter() - started.pop()

        def fed(module, args, output):  # the rows a decoding step really computes, a prefill's positions
            if args[0].shape[1] == 1:
                call["decoding_rows_computed"] += args[0].shape[0]
            else:
                call["prefill_positions_fed"] += args[0].numel()

        call["decoding_rows_computed"] = 0
        call["prefill_positions_fed"] = 0
        inner = open_rows.innermost(model)
        handles = [
            inner.register_forward_pre_hook(before, with_kwargs=True),
            inner.register_forward_hook(after, with_kwargs=True),
            model.get_input_embeddings().register_forward_hook(fed),
        ]
        began = time.perf_counter()
        try:
            output = original(model, tokenizer, active, sequences, budget, *args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        call["seconds"] = time.perf_counter() - began
        new = output.sequences[:, width:].tolist()
        call["steps"] = len(new[0]) if new else 0
        lengths = [len(agent._strip_padding(tokenizer, row)) for row in new]
        call["row_steps_run"] = call["rows"] * call["steps"]  # every row to the batch's end
        call["row_steps_computed"] = call["rows"] + call["decoding_rows_computed"]  # the prefill's, then
        call["row_steps_needed"] = sum(lengths)
        call["generated_lengths"] = sorted(lengths)
        calls.append(call)
        if not first_inputs:
            pad = tokenizer.pad_token_id
            ids = [[pad] * (width - len(s)) + s for s in sequences]
            mask = [[0] * (width - len(s)) + [1] * len(s) for s in sequences]
            first_inputs.extend([model, torch.tensor(ids), torch.tensor(mask), [list(s) for s in sequences]])
        return output

    agent._generate = recorded
    try:
        yield
    finally:
        agent._generate = original


@contextmanager
def _timing_kl(seconds: list[float]):
    """Time every ``kl_to_reference`` call of the block into ``seconds``."""
    original = evaluation.kl_to_reference

    def timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - began)

    evaluation.kl_to_reference = timed
    try:
        yield
    finally:
        evaluation.kl_to_reference = original


@torch.no_grad()
def rows_independent(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """Whether a batch's rows get the same logits, to the bit, in a batch of only some of them: a prefill
    of every other row against the whole batch's, and one greedy decoding step from the whole cache
    against the same step from those rows' part of it."""
    model.eval()
    keep = torch.arange(0, input_ids.shape[0], 2)
    whole = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True)
    part = model(input_ids=input_ids[keep], attention_mask=attention_mask[keep], use_cache=True)
    step_ids = whole.logits[:, -1].argmax(-1, keepdim=True)
    step_mask = torch.cat([attention_mask, torch.ones_like(step_ids)], dim=1)
    whole_cache = whole.past_key_values
    part_cache = copy.deepcopy(whole_cache)
    part_cache.batch_select_indices(keep)
    step_whole = model(input_ids=step_ids, attention_mask=step_mask, past_key_values=whole_cache).logits
    step_part = model(
        input_ids=step_ids[keep], attention_mask=step_mask[keep], past_key_values=part_cache
    ).logits
    return {
        "rows": int(input_ids.shape[0]),
        "kept_rows": len(keep),
        "prefill_identical": torch.equal(part.logits, whole.logits[keep]),
        "prefill_max_difference": (part.logits - whole.logits[keep]).abs().max().item(),
        "decode_identical": torch.equal(step_part, step_whole[keep]),
        "decode_max_difference": (step_part - step_whole[keep]).abs().max().item(),
    }


@torch.no_grad()
def prefix_logits(
    model, sequences: list[list[int]], input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict:
    """The first step's logits of left-padded ``input_ids`` from a full prefill and from the shared prefix
    read once (``paradigms.shared_prefix``), positions from the attention mask as ``generate`` makes them."""
    model.eval()
    positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
    full = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, logits_to_keep=1)
    keys = list(range(len(sequences)))
    carried = shared_prefix.carried(model, sequences, keys, input_ids.device)
    if carried is None:
        return {"rows": len(sequences), "shared": shared_prefix.length(sequences), "read_once": False}
    width = input_ids.shape[1]
    shared = carried.cached[keys[0]]
    cache = tool_cache.resume(carried, keys, [len(s) for s in sequences], width)
    columns = cache.get_seq_length()
    once = model(
        input_ids=input_ids[:, columns:],
        attention_mask=attention_mask,
        position_ids=positions[:, columns:],
        logits_to_keep=1,
        **{tool_cache.CACHE_FIELD: cache},
    )
    full, once = full.logits[:, -1], once.logits[:, -1]
    return {
        "rows": len(sequences),
        "width": int(width),
        "shared": shared,
        "read_once": True,
        "columns_from_cache": int(columns),
        "identical": torch.equal(full, once),
        "max_difference": (full - once).abs().max().item(),
        "largest_logit": full.abs().max().item(),
        "same_argmax": torch.equal(full.argmax(-1), once.argmax(-1)),
    }


def _totals(calls: list[dict]) -> dict:
    keys = (
        "seconds",
        "prefill_seconds",
        "decode_seconds",
        "steps",
        "row_steps_run",
        "row_steps_computed",
        "row_steps_needed",
        "prompt_tokens",
        "prefill_positions_fed",
    )
    totals = {key: sum(call[key] for call in calls) for key in keys}
    totals["prompt_positions_computed"] = sum(call["rows"] * call["width"] for call in calls)
    return totals


@contextmanager
def _rollouts(keyword: str, on: bool, episodes: list):
    """The session's rollouts with ``keyword=on`` for the block, their episodes kept in ``episodes``."""
    original = session_module.rollout

    def rollout(*args, **kwargs):
        made = original(*args, **{keyword: on}, **kwargs)
        episodes.append([(e.completion_ids, e.env_mask, e.completion) for e in made])
        return made

    session_module.rollout = rollout
    try:
        yield
    finally:
        session_module.rollout = original


def measure(config, repeats: int, trained: bool, way: str = "open_rows") -> dict:
    if trained:
        evaluator, paradigm, phase = eval_batching._final_parts(config)
    else:
        parts = assemble(config, progress=False)
        evaluator, paradigm, phase = parts.evaluator, parts.paradigm, None
    evaluator.session.answers = None
    evaluations = []
    first_inputs: list = []
    results: dict[bool, list] = {False: [], True: []}
    episodes: dict[bool, list] = {False: [], True: []}
    keyword = WAYS[way]
    for _ in range(repeats):
        for on in (False, True):
            calls: list[dict] = []
            kl_seconds: list[float] = []
            began = time.perf_counter()
            with (
                _recording(calls, first_inputs),
                _timing_kl(kl_seconds),
                _rollouts(keyword, on, episodes[on]),
            ):
                result = evaluator.evaluate(paradigm, phase)
            evaluations.append(
                {
                    keyword: on,
                    "seconds": time.perf_counter() - began,
                    "kl_seconds": sum(kl_seconds),
                    "generate": _totals(calls),
                    "calls": calls,
                    "load_average_1min": os.getloadavg()[0],
                }
            )
            results[on].append({k: v for k, v in result.items() if not metrics.measures_the_machine(k)})
    model, input_ids, attention_mask, sequences = first_inputs
    premise = (
        {"rows_independent": rows_independent(model, input_ids, attention_mask)}
        if way == "open_rows"
        else {"prefix_logits": prefix_logits(model, sequences, input_ids, attention_mask)}
    )
    return {
        "way": way,
        "arm": eval_share.arm_name(config),
        "backbone": config.backbone,
        "feedback_events": config.budget.feedback_events if trained else 0,
        "parts_together": evaluator.parts_together,
        "evaluations": evaluations,
        "same_metrics": results[True] == results[False],
        "same_episodes": episodes[True] == episodes[False],
        **premise,
    }


def report(row: dict) -> None:
    for index, result in enumerate(row["evaluations"]):
        g = result["generate"]
        keyword = WAYS[row.get("way", "open_rows")]
        way = f"{keyword}={result[keyword]}"
        print(
            f"{row['arm']} evaluation {index} ({way}): {result['seconds']:.3g}s, "
            f"generate {g['seconds']:.3g}s "
            f"(prefill {g['prefill_seconds']:.3g}s over {g['prefill_positions_fed']} positions fed "
            f"of {g['prompt_positions_computed']} padded, "
            f"{g['prompt_tokens']} real; decode {g['decode_seconds']:.3g}s over {g['steps']} steps, "
            f"row-steps needed {g['row_steps_needed']}, run {g['row_steps_run']}, "
            f"computed {g['row_steps_computed']}), "
            f"KL {result['kl_seconds']:.3g}s",
            flush=True,
        )
    print(
        f"same metrics {row['same_metrics']}, same episodes {row['same_episodes']}; "
        f"{'rows independent: ' + str(row['rows_independent']) if 'rows_independent' in row else ''}"
        f"{'prefix logits: ' + str(row['prefix_logits']) if 'prefix_logits' in row else ''}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    eval_share.add_run_arguments(parser, ("adapter:grpo",), repeats=2)
    parser.add_argument(
        "--trained", action="store_true", help="train the run whole first, then evaluate its final policy"
    )
    parser.add_argument(
        "--way",
        choices=sorted(WAYS),
        default="open_rows",
        help="the saving compared off and on (default open_rows)",
    )
    args = parser.parse_args()
    eval_share.run_arms(
        args, "eval_decoding", lambda config: measure(config, args.repeats, args.trained, args.way), report
    )


if __name__ == "__main__":
    main()
