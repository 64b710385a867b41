"""The processor contract: a batch of messages in, a batch of messages out.

A processor takes the messages its route accepts, appends its `Result` to their
trailers and its name to their header's route, and passes the others through
unchanged. Processors know messages, models and maths, never Bytewax or I/O, so each
can be tested with a list in and a list out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from processors.envelope.message import Message, Result


@dataclass(frozen=True)
class Route:
    """Which messages a processor takes; an empty field means 'any'.

    >>> Route(langs=frozenset({"en"})).accepts_fields(source="x", lang="de")
    False
    """

    sources: frozenset[str] = frozenset()
    langs: frozenset[str] = frozenset()

    def accepts(self, message: Message) -> bool:
        return self.accepts_fields(message.header.source, message.body.lang)

    def accepts_fields(self, source: str, lang: str | None) -> bool:
        if self.sources and source not in self.sources:
            return False
        # Items without a language tag are taken: most feeds do not set one.
        return not (self.langs and lang is not None and lang not in self.langs)


class Processor(ABC):
    """One step of the chain."""

    name: str

    @abstractmethod
    def process(self, batch: Sequence[Message]) -> list[Message]:
        """The batch, in order, with this processor's results appended."""


class RoutedProcessor(Processor):
    """A processor that scores the messages its route accepts and passes the rest."""

    route: Route = Route()

    @abstractmethod
    def results(self, messages: Sequence[Message]) -> list[Result]:
        """One result per message, in order; the messages are all accepted by the route."""

    def process(self, batch: Sequence[Message]) -> list[Message]:
        taken = [i for i, message in enumerate(batch) if self.route.accepts(message)]
        out = list(batch)
        if not taken:
            return out
        for i, result in zip(taken, self.results([batch[i] for i in taken]), strict=True):
            out[i] = with_result(batch[i], result)
        return out


def with_result(message: Message, result: Result) -> Message:
    """The message with `result` appended to its trailer and route."""
    header = msgspec.structs.replace(
        message.header, route=(*message.header.route, result.processor)
    )
    return msgspec.structs.replace(message, header=header, trailer=(*message.trailer, result))
