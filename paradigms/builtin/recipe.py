"""The recipe of the builtin base model and its cache key."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field

from tasks import corpus, grammar, world


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that determines the builtin base's weights (on CPU, bit for bit).

    The defaults are the measured recipe (BASE-NOTES.md and the build's own figures): a
    2-layer Llama, answer-token loss, a large share of dense associative-recall sequences.
    """

    n_layers: int = 2
    hidden_size: int = 128
    n_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 128
    steps: int = 2400
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay_steps: int = 480  # constant learning rate, then a cosine decay to 0 over the last steps
    weight_decay: float = 0.0
    seed: int = 0
    mixture: dict[str, float] = field(default_factory=lambda: dict(corpus.DEFAULT_MIXTURE))
    #: per world question kind, the share of tool-offered questions the corpus searches needlessly
    needless_search: dict[str, float] = field(
        default_factory=lambda: {kind: corpus.NEEDLESS_SEARCH for kind in world.WORLD_ATTRIBUTES}
    )

    def digest(self) -> str:
        """A short hash of the recipe and of the code that writes its corpus and vocabulary."""
        sources = "".join(inspect.getsource(m) for m in (corpus, grammar, world))
        payload = json.dumps(asdict(self), sort_keys=True) + sources
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


#: A seconds-long build for tests: same code path; it writes well-formed answers often enough for
#: rewards to vary (so RL updates are non-zero), but it is not competent.
TINY_RECIPE = BaseRecipe(
    n_layers=1,
    hidden_size=48,
    n_heads=2,
    intermediate_size=96,
    steps=300,
    batch_size=32,
    learning_rate=3e-3,
    decay_steps=60,
)


#: The default recipe except that the corpus searches needlessly before 90% of the tool-offered
#: world questions about ``home`` (8% elsewhere, as in the default): a base whose own search habit
#: is miscalibrated, so greedy decoding searches on every ``home`` question although the base knows
#: the answer. The testbed of the learned tool policy (experiments/tool_policy.yaml).
OVERSEARCH_RECIPE = BaseRecipe(needless_search={**BaseRecipe().needless_search, "home": 0.9})
