"""The search tool over a user's knowledge base.

The knowledge base is the user's current profile as fact lines (``my dog rex .``). A query is
matched by word overlap on its content words; the best ``max_results`` lines come back, or
nothing. The tool itself is stateless; the rollout counts calls and enforces the per-query cap,
and the reward's ``search_cost`` component charges for every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import grammar

_STOP_WORDS = frozenset({grammar.USER_SUBJECT, ".", "?", "ask"})


@dataclass(frozen=True)
class SearchTool:
    """Answers a query with up to ``max_results`` knowledge-base lines sharing a content word."""

    lines: tuple[str, ...]
    max_results: int = 2

    def __call__(self, query: str) -> list[str]:
        words = set(grammar.normalize(query).split()) - _STOP_WORDS
        if not words:
            return []
        scored = [(len(words & set(line.split())), i) for i, line in enumerate(self.lines)]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        return [self.lines[i] for _, i in ranked[: self.max_results]]
