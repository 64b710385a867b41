"""The classifying processor: one task, one or more models, one merge strategy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from processors.chain.base import Route, RoutedProcessor
from processors.chain.merge import STRATEGIES
from processors.envelope.labels import LABELS
from processors.envelope.message import Message, Result
from processors.models import Model


@dataclass(frozen=True)
class Member:
    model: Model
    weight: float = 1.0


def classification_text(message: Message) -> str:
    """What the models read: the title, when there is one, then the text."""
    title = message.body.title
    if title and not message.body.text.startswith(title):
        return f"{title}. {message.body.text}"
    return message.body.text


class ClassifyProcessor(RoutedProcessor):
    """Labels each accepted message for `task`; an ensemble keeps each member's result.

    >>> from processors.envelope.message import Body, Header
    >>> from datetime import datetime, timezone
    >>> class Bearish(Model):
    ...     model_id, tasks = "always-bearish", ("sentiment",)
    ...     def predict(self, task, texts):
    ...         return np.tile([0.8, 0.15, 0.05], (len(texts), 1))
    >>> now = datetime(2024, 1, 2, tzinfo=timezone.utc)
    >>> msg = Message(Header("1", "item", "x", now, now), Body("Oil slumps"))
    >>> [out] = ClassifyProcessor("sentiment", "sentiment", [Member(Bearish())]).process([msg])
    >>> out.trailer[0].label, out.header.route
    ('negative', ('sentiment',))
    """

    def __init__(
        self,
        name: str,
        task: str,
        members: Sequence[Member],
        merge: str = "weighted_mean",
        route: Route | None = None,
    ) -> None:
        if not members:
            raise ValueError(f"processor {name!r} needs at least one model")
        self.name = name
        self.task = task
        self.labels = LABELS[task]
        self.members = list(members)
        self.merge = STRATEGIES[merge]
        self.route = route or Route()

    def results(self, messages: Sequence[Message]) -> list[Result]:
        texts = [classification_text(m) for m in messages]
        started = perf_counter()
        member_probabilities = [m.model.predict(self.task, texts) for m in self.members]
        if len(self.members) == 1:
            merged = member_probabilities[0]
        else:
            merged = self.merge(member_probabilities, [m.weight for m in self.members])
        latency = perf_counter() - started
        model_id = "+".join(m.model.model_id for m in self.members)
        results = []
        for row in range(len(messages)):
            members: tuple[Result, ...] = ()
            if len(self.members) > 1:
                members = tuple(
                    self._result(m.model.model_id, p[row], latency)
                    for m, p in zip(self.members, member_probabilities, strict=True)
                )
            results.append(self._result(model_id, merged[row], latency, members))
        return results

    def _result(
        self,
        model_id: str,
        probabilities: np.ndarray,
        latency: float,
        members: tuple[Result, ...] = (),
    ) -> Result:
        scores = {
            label: round(float(p), 4) for label, p in zip(self.labels, probabilities, strict=True)
        }
        label = self.labels[int(np.argmax(probabilities))]
        return Result(self.name, self.task, label, scores, model_id, latency, members)
