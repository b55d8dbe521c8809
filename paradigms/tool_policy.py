"""A value-based tool policy: tabular Q-learning of when to search, while the language model stays fixed.

The decision to call the search tool is taken out of the model's hands: for each query the policy
picks an action in ``{search, answer}`` from features of what the agent sees, and the shared rollout
enforces it on the sampled tokens (``paradigms.agent``: ``search`` opens the completion with a search
call, ``answer`` forbids one). The reward is the task's own weighted reward of the response
(correctness, format, wasted searches, search cost), so the policy learns where a search pays.

The problem is a contextual bandit (one decision per query, then the episode ends), so the update
has no bootstrap term and no discount: ``Q(s, a) <- Q(s, a) + step * (r - Q(s, a))`` with
``step = max(1 / n, learning_rate)`` at the n-th reward of ``a`` in ``s``: the sample average of the
rewards until 1/n falls to ``learning_rate``, then a constant step, which forgets old rewards and so
tracks a user whose needs drift. (A large constant step from the start is too noisy here: the format
component alone moves a reward by 0.5, more than the 0.3 a wasted search costs.)
Exploration in training is explore-first, then epsilon-greedy: in a state it has seen, the policy
takes the less-tried action until each action has ``min_tries`` rewards there, then a random action
with probability epsilon, epsilon multiplied by ``epsilon_decay`` after every learning batch. The
explore-first part matters when the model itself always takes one action in a state (a base that
searches needlessly): epsilon alone, decaying per batch over all states, then tries the other action
there only a few times, and one unlucky reward among three fixes the wrong choice for good.
In a state never seen, and at evaluation until both actions have been tried, the policy defers to the
model (decision None), so an untrained policy behaves exactly like the paradigm without one; the
action credited is the one the episode actually took (a search call or not), whoever decided it.

State features (``query_state``) are computed by one function for every paradigm, from the query
and the notes in its prompt: whether the question is about the user or the world, which attribute
it asks, and whether a note in the prompt already states that subject's attribute (e.g. a memory
retrieved by the ``memory`` paradigm).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from paradigms.agent import ANSWER, SEARCH, Episode
from paradigms.sections import ToolPolicySettings
from tasks.items import Query
from tasks.protocols import PROTOCOLS, USER_SUBJECT, Protocol

ACTIONS: tuple[str, ...] = (SEARCH, ANSWER)


def query_state(query: Query, notes: Sequence[str], protocol: Protocol | None = None) -> str:
    """The policy's state for a query: ``<personal|world>:<attribute>:<noted|unnoted>``.

    ``noted`` when a prompt note states the asked subject's asked attribute (``note my dog rex .``
    for ``ask my dog ?``), as the ``protocol`` (default grammar) reads notes. Only what the agent
    sees is read, never the answer key.
    """
    if not query.subject or not query.attribute:
        return "other"
    protocol = protocol or PROTOCOLS["grammar"]
    subject, attribute = query.subject, query.attribute
    kind = "personal" if subject == USER_SUBJECT else "world"
    stated = [protocol.note_statement(note) for note in notes]
    noted = any(s is not None and s.subject == subject and s.attribute == attribute for s in stated)
    return f"{kind}:{attribute}:{'noted' if noted else 'unnoted'}"


def taken_action(episode: Episode) -> str:
    """The action an episode actually took: ``search`` if it called the tool at all."""
    return SEARCH if episode.search_calls > 0 else ANSWER


class QLearningToolPolicy:
    """Tabular action values ``q[state][action]`` with visit counts, epsilon-greedy over ``ACTIONS``."""

    def __init__(self, settings: ToolPolicySettings, seed: int):
        self.settings = settings
        self.epsilon = settings.epsilon
        self.q: dict[str, dict[str, float]] = {}
        self.visits: dict[str, dict[str, int]] = {}
        self.rng = random.Random(seed)

    def greedy(self, state: str) -> str | None:
        """The best tried action, or None (defer to the model) until both actions were tried here."""
        visits = self.visits.get(state, {})
        if not all(visits.get(a, 0) for a in ACTIONS):
            return None
        values = self.q[state]
        return max(ACTIONS, key=lambda a: values[a])  # ties: the first of ACTIONS

    def untried(self, state: str) -> str | None:
        """The action still owed exploration in a seen ``state``: the less-tried one while it has fewer
        than ``min_tries`` rewards there (ties: the first of ACTIONS); None once both have enough, and in
        a state never seen (where the model decides)."""
        visits = self.visits.get(state)
        if not visits:
            return None
        least = min(ACTIONS, key=lambda a: visits[a])
        return least if visits[least] < self.settings.min_tries else None

    def act(self, states: Sequence[str], explore: bool) -> list[str | None]:
        """One decision per state. ``explore`` (training) first takes the action a seen state still owes
        (``untried``), else a uniformly random action with probability epsilon, else the greedy one;
        without ``explore`` (evaluation) always the greedy one."""
        decisions: list[str | None] = []
        for state in states:
            owed = self.untried(state) if explore else None
            if owed is not None:
                decisions.append(owed)
            elif explore and self.rng.random() < self.epsilon:
                decisions.append(self.rng.choice(ACTIONS))
            else:
                decisions.append(self.greedy(state))
        return decisions

    def update(self, states: Sequence[str], actions: Sequence[str], rewards: Sequence[float]) -> None:
        """One bandit update per (state, action, reward) in order, then one epsilon decay."""
        floor = self.settings.learning_rate
        for state, action, reward in zip(states, actions, rewards, strict=True):
            values = self.q.setdefault(state, {a: 0.0 for a in ACTIONS})
            counts = self.visits.setdefault(state, {a: 0 for a in ACTIONS})
            counts[action] += 1
            # the running mean of the rewards (the first is the estimate), then a constant step
            step = max(1.0 / counts[action], floor)
            values[action] += step * (reward - values[action])
        self.epsilon = max(self.settings.min_epsilon, self.epsilon * self.settings.epsilon_decay)

    def learn(
        self, states: Sequence[str], decisions: Sequence[str | None], episodes: Sequence[Episode], rewards
    ) -> dict[str, float]:
        """Update from one scored batch (``episodes[i]`` answered ``states[i]``); return its metrics."""
        self.update(states, [taken_action(e) for e in episodes], rewards)
        n = max(len(decisions), 1)
        return {
            "policy/epsilon": self.epsilon,
            "policy/q_search": self.mean_value(SEARCH),
            "policy/q_answer": self.mean_value(ANSWER),
            "policy/search_rate": sum(d == SEARCH for d in decisions) / n,
            "policy/defer_rate": sum(d is None for d in decisions) / n,
            "policy/states": float(len(self.q)),
        }

    def mean_value(self, action: str) -> float:
        """Mean of ``q[s][action]`` over the states where ``action`` was tried (0 before any)."""
        values = [self.q[s][action] for s, counts in self.visits.items() if counts[action]]
        return sum(values) / len(values) if values else 0.0

    def table(self) -> dict:
        """The learned table, as saved beside a paradigm's state."""
        return {"epsilon": self.epsilon, "q": self.q, "visits": self.visits}


def make_tool_policy(settings: ToolPolicySettings | None) -> QLearningToolPolicy | None:
    """The policy a paradigm's ``tool_policy`` section asks for (None: the model decides).

    Its exploration is seeded from Python's global RNG, which the runner has seeded; nothing is
    drawn from it when there is no policy, so runs without one are unchanged.
    """
    if settings is None or settings.name == "none":
        return None
    return QLearningToolPolicy(settings, random.getrandbits(32))
