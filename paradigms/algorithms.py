"""The algorithm registry: how a weight-changing paradigm turns feedback into updates.

Each entry is a ``Learner`` class carrying its config model as ``Settings`` (its ``algorithm:``
section). ``none`` is the choice of paradigms that never change weights (``frozen``,
``oracle``, ``memory``). The learners themselves live in ``paradigms/rl/``.
"""

from __future__ import annotations

from paradigms.rl.settings import GRPOSettings, PPOSettings, ReinforceSettings, SFTSettings
from paradigms.sections import AlgorithmSettings, NoAlgorithm
from tasks.registry import Registry

__all__ = ["ALGORITHMS", "AlgorithmSettings", "NoAlgorithm", "NoLearner"]


class NoLearner:
    """The registry entry for ``none``: nothing to run."""

    Settings = NoAlgorithm


ALGORITHMS: Registry[type] = Registry("algorithm")
ALGORITHMS.add("none", NoLearner)
# Imported on first use: the learners need torch and TRL, their settings do not.
ALGORITHMS.add_lazy("grpo", "paradigms.rl.grpo:GRPO", GRPOSettings)
ALGORITHMS.add_lazy("ppo", "paradigms.rl.ppo:PPO", PPOSettings)
ALGORITHMS.add_lazy("reinforce", "paradigms.rl.reinforce:Reinforce", ReinforceSettings)
ALGORITHMS.add_lazy("sft", "paradigms.rl.sft:SFT", SFTSettings)
