"""Everything that acts and learns: backbones, the one rollout, the paradigms and the RL engine.

The package itself is light: it holds the registries, whose entries are imported on first
lookup (``PARADIGMS["adapter"]`` loads torch and PEFT), while their settings are known at once
(``PARADIGMS.settings("adapter")``), so configs are validated without the model stack.
"""

from paradigms.algorithms import ALGORITHMS
from paradigms.cpu_kernels import pin_cpu_kernels
from paradigms.memory.settings import MemorySettings
from paradigms.settings import (
    AdapterSettings,
    FrozenSettings,
    FullFinetuneSettings,
    HybridSettings,
    OracleSettings,
)
from tasks.registry import Registry

pin_cpu_kernels()  # before any tensor is computed: every run on the same kernels, whatever the host

PARADIGMS: Registry[type] = Registry("paradigm")
PARADIGMS.add_lazy("adapter", "paradigms.adapter:Adapter", AdapterSettings)
PARADIGMS.add_lazy("frozen", "paradigms.frozen:Frozen", FrozenSettings)
PARADIGMS.add_lazy("full_ft", "paradigms.full_finetune:FullFinetune", FullFinetuneSettings)
PARADIGMS.add_lazy("oracle", "paradigms.oracle:Oracle", OracleSettings)
PARADIGMS.add_lazy("memory", "paradigms.memory.paradigm:Memory", MemorySettings)
PARADIGMS.add_lazy("hybrid", "paradigms.hybrid:Hybrid", HybridSettings)

__all__ = ["ALGORITHMS", "PARADIGMS"]
