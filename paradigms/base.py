"""The ``Paradigm`` protocol every way of learning a user implements, and the paradigm registry.

A paradigm owns its learning loop: ``train(session)`` consumes the session's stream until the
budget is spent, answering through ``session.interact`` (the one rollout and scorer) and calling
``session.record`` after each batch. The evaluator reads the paradigm's current policy through
``model``, ``tokenizer`` and ``context_for`` and never changes it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from paradigms.backbone import Backbone
from paradigms.sections import ParadigmSettings
from paradigms.session import Interaction, Session
from paradigms.tool_policy import make_tool_policy, query_state
from tasks.items import Item


class Paradigm(ABC):
    """A way of learning one user. Subclasses set ``Settings`` (from ``paradigms.settings``)."""

    #: The config section; its ``uses_algorithm`` and ``supports_continual`` say what the paradigm accepts.
    Settings: ClassVar[type[ParadigmSettings]]
    #: Whether ``context_for`` may place notes in a prompt (the evaluator then also answers the
    #: general probe without them: ``eval/general_accuracy_without_notes``).
    notes_in_prompt: ClassVar[bool] = False
    #: Whether an evaluation leaves every part of the paradigm's state as it found it (no retrieval
    #: counters or latencies, no index built on demand, no tool-policy table touched), but for what it
    #: keeps for later evaluations and hands over (:meth:`evaluation_keeps`): a forked copy of the run can
    #: then evaluate it while the run trains on (``experiments.background_evaluation``).
    evaluation_writes_no_state: ClassVar[bool] = False

    def __init__(self, settings: ParadigmSettings, backbone: Backbone, algorithm=None):
        self.settings, self.backbone, self.algorithm = settings, backbone, algorithm
        self.session: Session | None = None
        #: The learned search decision (``paradigm.tool_policy``), None when the model decides.
        self.tool_policy = make_tool_policy(getattr(settings, "tool_policy", None))

    @property
    def model(self):
        """The policy network answering now (the evaluator generates with it)."""
        return self.backbone.model

    @property
    def tokenizer(self):
        return self.backbone.tokenizer

    @property
    def protocol(self):
        """How this paradigm's backbone reads and writes text (``tasks.protocols``)."""
        return self.backbone.protocol

    def bind(self, session: Session) -> None:
        """Attach the session (called by the runner before ``train`` and the first evaluation)."""
        self.session = session

    def evaluation_keeps(self) -> dict[str, Any]:
        """What evaluations computed and keep for the next ones (picklable; exact, so keeping it changes no
        metric, only how long later evaluations take): a forked copy that evaluated hands it back, and the
        run adopts it (:meth:`adopt_evaluation_keeps`). Nothing here."""
        return {}

    def adopt_evaluation_keeps(self, kept: dict[str, Any]) -> None:
        """Keep what an evaluation in a forked copy of the run computed (:meth:`evaluation_keeps`)."""
        return None  # nothing is kept here

    def evaluation_state(self) -> dict[str, Any] | None:
        """Everything of this paradigm that training changes and an evaluation reads, picklable; None (here):
        not said. A copy of the run forked at an earlier evaluation that loads it
        (:meth:`load_evaluation_state`) evaluates the paradigm as the run would now, so the runner may keep
        one copy for a run's evaluations instead of forking one for each (``experiments.run``)."""
        return None

    def load_evaluation_state(self, state: dict[str, Any]) -> None:
        """Become, for evaluating, the paradigm :meth:`evaluation_state` was read from."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation state to load")

    @abstractmethod
    def train(self, session: Session) -> None:
        """Consume ``session`` until ``session.done``, calling ``session.record`` after each batch."""

    def context_for(self, items: Sequence[Item]) -> list[list[str]]:
        """The notes this paradigm places in each item's prompt (read-only; default none)."""
        return [[] for _ in items]

    def tool_decisions(
        self, items: Sequence[Item], contexts: Sequence[Sequence[str]], explore: bool = False
    ) -> list[str | None] | None:
        """The tool policy's search decision per item (None: no policy, the model decides)."""
        if self.tool_policy is None:
            return None
        states = [query_state(i.query, c, self.protocol) for i, c in zip(items, contexts, strict=True)]
        return self.tool_policy.act(states, explore)

    def answer_batch(
        self, session: Session, items: Sequence[Item], contexts: Sequence[Sequence[str]]
    ) -> tuple[Interaction, dict[str, float]]:
        """Answer a batch through the session; the tool policy, if any, decides and learns from it.

        Returns the scored interaction and the tool policy's metrics (``policy/...``; empty without one).
        """
        decisions = self.tool_decisions(items, contexts, explore=True)
        interaction = session.interact(self.model, self.tokenizer, items, contexts, decisions=decisions)
        if self.tool_policy is None:
            return interaction, {}
        states = [query_state(i.query, c, self.protocol) for i, c in zip(items, contexts, strict=True)]
        metrics = self.tool_policy.learn(states, decisions, interaction.episodes, interaction.rewards)
        return interaction, metrics

    def save_tool_policy(self, directory: Path) -> list[Path]:
        """Write the tool policy's table as ``tool_policy.json`` under ``directory`` (nothing without one)."""
        if self.tool_policy is None:
            return []
        path = Path(directory) / "tool_policy.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.tool_policy.table(), indent=2, sort_keys=True))
        return [path]

    def trainable_parameters(self) -> int:
        """Parameters the learning rule changes (0 for paradigms that never train)."""
        return 0

    def storage_bytes(self) -> int:
        """Bytes of per-user state the paradigm keeps beyond the shared base."""
        return 0

    def train_flops(self) -> float:
        """Estimated FLOPs spent learning so far: updates, and every forward pass made to maintain the
        paradigm's state (a memory's reflection and note embeddings); ``paradigms.compute``'s convention."""
        return 0.0

    def inference_flops(self) -> float:
        """FLOPs of forward passes made to answer the stream beyond the shared rollout's, which the runner
        counts for every paradigm (a memory's question embeddings for retrieval); evaluation excluded."""
        return 0.0

    def extra_metrics(self) -> dict[str, float]:
        """Paradigm-specific metrics the evaluator logs beside the shared ones."""
        return {}

    def save(self, directory: Path) -> list[Path]:
        """Write the per-user state (store, adapter, weights) under ``directory``; return the files."""
        return []
