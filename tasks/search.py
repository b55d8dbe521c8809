"""The search tool over a user's knowledge base.

The knowledge base is the user's current private facts, each written as a line by the run's
protocol (``my dog rex .`` / ``The user's dog is called Rex.``). A query is matched by overlap of
content words (the protocol's ``search_words``); the best ``max_results`` lines come back, or
nothing. The tool itself is stateless; the rollout counts calls and enforces the per-query cap,
and the reward's ``search_cost`` component charges for every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tasks.protocols import PROTOCOLS, Protocol, Statement


@dataclass(frozen=True)
class SearchTool:
    """Answers a query with up to ``max_results`` knowledge-base lines sharing a content word."""

    lines: tuple[str, ...]
    max_results: int = 2
    protocol: Protocol = field(default_factory=lambda: PROTOCOLS["grammar"])

    @classmethod
    def over(cls, facts: Sequence[Statement], protocol: Protocol, max_results: int = 2) -> SearchTool:
        """A tool whose knowledge base is ``facts``, written in ``protocol``'s words."""
        return cls(tuple(protocol.result_line(f) for f in facts), max_results, protocol)

    def __call__(self, query: str) -> list[str]:
        words = self.protocol.search_words(query)
        if not words:
            return []
        scored = [(len(words & self.protocol.search_words(line)), i) for i, line in enumerate(self.lines)]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        return [self.lines[i] for _, i in ranked[: self.max_results]]
