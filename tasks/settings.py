"""The ``task:`` section of a run's config, declared once: what the runner validates, logs and hands to
the suites, which read it (``tasks.suites``, ``tasks.log_suite``), is this one class.

Also ``SECTION``, how every config section of the harness validates, here because the task package
is the one every other package may import (``paradigms`` and ``experiments`` build on it). This
module imports nothing but pydantic and the worlds, so validating a config never loads datasets,
torch or FAISS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr

from tasks.worlds import WorldView, builtin_world

#: How every config section validates: unknown keys refused, values frozen, and no infinity or NaN
#: (``1e309`` in YAML is the string "1e309", which a float field would otherwise read as inf).
SECTION = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

#: Queries answered at once; each is generated ``group_size`` times, so a step holds their product.
MAX_BATCH_SIZE = 512
#: Search results per call and calls per query: beyond these the prompt is only tool output.
MAX_SEARCH_RESULTS = 32
MAX_SEARCHES = 16


class TaskSettings(BaseModel):
    """The task suite and its knobs (the config's ``task:`` section).

    ``world`` is not a config field: it is the world the backbone knows (its protocol's, restricted
    to the facts the untouched backbone answers right), which the runner attaches with
    :meth:`with_world` once the backbone is loaded; the builtin world until then. It takes no part in
    validation, the logged params or the config hash.
    """

    model_config = SECTION

    suite: str = Field(
        "default",
        description="Task family: user_facts, preferences, search_or_answer, drift, "
        "default (see tasks/suites.py), or jsonl: your own user logs from task.path (docs/user-logs.md).",
    )
    path: Path | None = Field(
        None, description="The user-log file the jsonl suite reads (one JSON object per line)."
    )
    holdout: PositiveInt | Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2,
        description="jsonl suite: each user's latest lines held out for evaluation, as a share in (0, 1) "
        "or a count (an integer from 1).",
    )
    search: bool = Field(
        True, description="Whether the search tool over the user's knowledge base is offered."
    )
    feedback: Literal["text", "scalar"] = Field(
        "text",
        description="Feedback channel: reward components plus a textual correction, or the rewards only.",
    )
    search_results: int = Field(
        2,
        ge=1,
        le=MAX_SEARCH_RESULTS,
        description=f"Lines a search returns at most (up to {MAX_SEARCH_RESULTS}).",
    )
    shared_formats: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How much users share their format preferences: per question kind, the chance "
        "a user holds the population's favourite format instead of a uniformly random one (0: "
        "nothing shared; the structure a meta-learned start can exploit, see experiments/meta.yaml).",
    )
    max_searches: int = Field(
        2,
        ge=0,
        le=MAX_SEARCHES,
        description=f"Search calls allowed per query (up to {MAX_SEARCHES}); further calls get nothing.",
    )
    batch_size: int = Field(
        4,
        ge=1,
        le=MAX_BATCH_SIZE,
        description=f"Queries answered between two learning steps (every paradigm; up to {MAX_BATCH_SIZE}).",
    )
    users: Literal["evaluation", "tuning"] = Field(
        "evaluation",
        description="Which user population the seeds name: evaluation users (seeds below 9e8) or "
        "the tuning users harness tune chooses hyperparameters on (seeds from 9e8 up); each refuses "
        "the other's seeds, so no tuning user is ever evaluated.",
    )

    _world: WorldView | None = PrivateAttr(None)

    @property
    def world(self) -> WorldView:
        """The world the suite draws general questions from (the builtin one unless attached)."""
        return self._world if self._world is not None else builtin_world()

    def with_world(self, world: WorldView) -> TaskSettings:
        """A copy of these settings whose suite draws from ``world`` (the backbone's)."""
        copy = self.model_copy()
        copy._world = world
        return copy
