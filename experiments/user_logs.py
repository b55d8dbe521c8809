"""``harness export-users``: an experiment's simulated users written as a user-log file.

The world and the protocol are the run's own (the builtin world and grammar for a builtin base; a
chat backbone's restricted real world from its cached competence card, and the chat protocol's
wording), found without loading the model.
"""

from __future__ import annotations

from pathlib import Path

from experiments.config import ConfigError, Experiment, grammar_spoken
from tasks.export import NotExportable, simulated_users_log
from tasks.protocols import PROTOCOLS
from tasks.suites import SUITES
from tasks.user_logs import LogError, write_log
from tasks.worlds import WorldView, builtin_world


def _world(experiment: Experiment) -> WorldView:
    config = experiment.base
    if grammar_spoken(config):
        return builtin_world()
    from experiments.base import resolve_backbone
    from experiments.competence import card_world, read_card

    card = read_card(resolve_backbone(config.backbone, progress=False), config.dtype)
    if card is None:
        raise ConfigError(
            f"backbone: {config.backbone} has no competence card yet, so its world is unknown; measure it "
            f"once with: harness base info --backbone {config.backbone}"
        )
    return card_world(card)


def export_simulated_users(experiment: Experiment, out: Path) -> tuple[int, int]:
    """Write the experiment's users (its ``seeds``, base config) to ``out``.

    Returns the number of lines written and of held-out lines per user.

    Raises ``ConfigError`` for a suite that cannot be exported or a chat backbone without a card.
    """
    config = experiment.base
    protocol = PROTOCOLS["grammar" if grammar_spoken(config) else "chat"]
    options = config.task.with_world(_world(experiment))
    try:
        lines, held_out = simulated_users_log(
            SUITES[config.task.suite], experiment.seeds, config.budget.feedback_events, options, protocol
        )
        write_log(lines, out)
    except (NotExportable, LogError) as error:
        raise ConfigError(str(error)) from None
    return len(lines), held_out
