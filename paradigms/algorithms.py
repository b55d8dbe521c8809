"""The algorithm registry: how a weight-changing paradigm turns feedback into updates.

Each algorithm registers a settings model (its ``algorithm:`` config section). ``none`` is the
choice of paradigms that never change weights (``frozen``, ``oracle``, ``memory``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from tasks.registry import Registry


class AlgorithmSettings(BaseModel):
    """Base of every algorithm's config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    #: Whether this is a real learning rule (everything except ``none``).
    trains: ClassVar[bool] = True


class NoAlgorithm(AlgorithmSettings):
    """No learning rule: the paradigm learns without changing weights, or not at all."""

    name: Literal["none"] = "none"
    trains: ClassVar[bool] = False


ALGORITHMS: Registry[type[AlgorithmSettings]] = Registry("algorithm")
ALGORITHMS.add("none", NoAlgorithm)
