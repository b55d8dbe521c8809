"""Serving cost at scale: from the runs' logged per-user costs to storage and compute for many users.

Two pure functions. :func:`per_user_costs` reads, per comparison group (paradigm, algorithm,
variant), the mean over its finished runs of each run's last logged value of

- ``cost/storage_bytes``: the state kept per user (memory store, adapter, or the whole model);
- ``cost/prompt_tokens`` + ``cost/generated_tokens`` over the feedback events consumed: the tokens
  the model reads and writes per query (retrieved notes included);
- ``cost/train_flops`` over the feedback events consumed: the learning compute per feedback event;
- ``cost/trainable_params``,

and the shared base's size from the ``full_ft`` runs (which train, and store, every weight).
:func:`serving_costs` turns those into, for each number of users, the storage of the whole fleet,
the FLOPs per query and the per-user state bytes loaded per query, under stated assumptions
(:class:`Assumptions`, printed on the figure by ``analysis.serving_figure``):

- every user sends queries at the same rate, and each query gets one feedback event, so the
  learning compute per query is the measured train FLOPs per feedback event;
- answering reads ``tokens`` tokens: ``2 x base parameters`` FLOPs per token, plus ``2 x adapter
  parameters`` for a paradigm whose trained weights are a separate per-user adapter (not merged,
  so many users share one base in a batch); ``full_ft`` serves each user's own whole model;
- storage is the per-user state times the users, plus one shared base (none for ``full_ft``);
- a serving node holds ``node_bytes`` of weights and user state: the shared base, and as many
  users' states as fit; a query whose user's state is not resident loads it, so the bytes loaded
  per query are ``state x (1 - resident users / users)`` (uniform popularity);
- memory's query embedding, index search and reflection passes (the memory paradigm does not log
  them as training), and the tool's result tokens, are not in the FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.names import GENERATED_TOKENS, PROMPT_TOKENS, STORAGE_BYTES, TRAIN_FLOPS, TRAINABLE_PARAMS
from analysis.runs import GROUP_COLUMNS, final_values, group_members, ordered_groups

USER_COUNTS = (1_000, 10_000, 100_000, 1_000_000)
FULL_MODEL_PARADIGM = "full_ft"


@dataclass(frozen=True)
class Assumptions:
    """What the scale picture assumes beyond the measured costs (see the module docstring)."""

    users: tuple[int, ...] = USER_COUNTS
    node_bytes: float = 80e9  # one 80 GB accelerator's memory for weights and user state
    feedback_per_query: float = 1.0

    def lines(self) -> tuple[str, ...]:
        """The assumptions as short sentences (the figure prints them)."""
        return (
            f"Uniform users; {self.feedback_per_query:g} feedback event per query, so learning per query "
            "= measured train FLOPs per event.",
            "Answer FLOPs = 2 x (base + unmerged per-user adapter) parameters x measured tokens per query; "
            "full_ft serves each user's own model.",
            "Storage = users x per-user state + one shared base (none for full_ft). "
            f"A node with {self.node_bytes / 1e9:g} GB keeps the base and as many users' states as fit;",
            "a query of a non-resident user loads its state. Memory's query embedding, index search and "
            "reflection passes are not counted.",
        )


def per_user_costs(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per group of ``runs`` (finished run rows of ``analysis.runs.run_table``) with the mean over
    its runs of ``state_bytes``, ``tokens_per_query``, ``train_flops_per_event``, ``trainable_params``
    and ``runs``. Runs missing any of those metrics are left out; groups left empty are dropped."""
    storage, flops = final_values(table, STORAGE_BYTES), final_values(table, TRAIN_FLOPS)
    trainable = final_values(table, TRAINABLE_PARAMS)
    prompt, generated = final_values(table, PROMPT_TOKENS), final_values(table, GENERATED_TOKENS)
    events = table.dropna(subset=["step"]).groupby("run_id")["step"].max().astype("float64")
    rows = []
    for key in ordered_groups(runs):
        members = group_members(runs, key)
        ids = [
            i
            for i in members["run_id"]
            if all(i in series.index for series in (storage, flops, trainable, prompt, generated))
            and events.get(i, 0) > 0
        ]
        if not ids:
            continue
        rows.append(
            {
                **dict(zip(GROUP_COLUMNS, key, strict=True)),
                "runs": len(ids),
                "state_bytes": float(storage[ids].mean()),
                "tokens_per_query": float(((prompt[ids] + generated[ids]) / events[ids]).mean()),
                "train_flops_per_event": float((flops[ids] / events[ids]).mean()),
                "trainable_params": float(trainable[ids].mean()),
            }
        )
    return pd.DataFrame(rows)


def shared_base(costs: pd.DataFrame) -> tuple[float, float]:
    """``(parameters, bytes)`` of the base, from the ``full_ft`` groups of ``costs`` (every weight trained
    and stored). Raises ``ValueError`` when there is none to read it from."""
    full = costs[costs["paradigm"] == FULL_MODEL_PARADIGM]
    if full.empty:
        raise ValueError("no full_ft run to read the base model's size from")
    return float(full["trainable_params"].iloc[0]), float(full["state_bytes"].iloc[0])


def serving_costs(
    costs: pd.DataFrame, base_parameters: float, base_bytes: float, assumptions: Assumptions | None = None
) -> pd.DataFrame:
    """Per group of ``costs`` (:func:`per_user_costs`) and number of users, the serving picture.

    Returns one row per (group, users), groups in ``costs``' order, users ascending, with the group
    columns, ``users`` and: ``storage_bytes`` (the fleet), ``answer_flops_per_query``,
    ``learning_flops_per_query``, ``flops_per_query`` (their sum), ``resident_users`` (states a node
    holds; ``inf`` when a user keeps no state) and ``loaded_bytes_per_query``. Raises ``ValueError``
    when the base does not fit the node.
    """
    assumptions = assumptions or Assumptions()
    if base_bytes > assumptions.node_bytes:
        raise ValueError(f"the base ({base_bytes:.3g} B) does not fit a {assumptions.node_bytes:.3g} B node")
    rows = []
    for row in costs.itertuples(index=False):
        whole_model = row.paradigm == FULL_MODEL_PARADIGM
        shared = 0.0 if whole_model else base_bytes
        adapter = 0.0 if whole_model or row.trainable_params >= base_parameters else row.trainable_params
        answer = 2.0 * (base_parameters + adapter) * row.tokens_per_query
        learning = assumptions.feedback_per_query * row.train_flops_per_event
        state = row.state_bytes
        resident = math.floor((assumptions.node_bytes - shared) / state) if state > 0 else math.inf
        for users in assumptions.users:
            missing = 0.0 if math.isinf(resident) else max(0.0, 1.0 - resident / users)
            rows.append(
                {
                    **{c: getattr(row, c) for c in GROUP_COLUMNS},
                    "users": users,
                    "storage_bytes": shared + users * state,
                    "answer_flops_per_query": answer,
                    "learning_flops_per_query": learning,
                    "flops_per_query": answer + learning,
                    "resident_users": float(resident),
                    "loaded_bytes_per_query": state * missing,
                }
            )
    return pd.DataFrame(rows)
