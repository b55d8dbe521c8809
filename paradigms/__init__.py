"""Everything that acts and learns: backbones, the one rollout, the paradigms and the RL engine.

Importing the package registers every builtin paradigm and algorithm.
"""

from paradigms import adapter, frozen, full_finetune, hybrid, oracle  # noqa: F401  (registration)
from paradigms.algorithms import ALGORITHMS
from paradigms.base import PARADIGMS
from paradigms.memory import paradigm as _memory  # noqa: F401  (registration)
from paradigms.rl import grpo, ppo, reinforce, sft  # noqa: F401  (registration)

__all__ = ["ALGORITHMS", "PARADIGMS"]
