"""The envelope every item travels in, the strict parser into it, and the canonical labels."""

from processors.envelope.labels import LABELS, SENTIMENTS, TOPICS
from processors.envelope.message import (
    NO_END,
    AlertEvent,
    Body,
    DeadLetter,
    Evidence,
    Header,
    Message,
    Result,
    TopicWindow,
    to_json,
)
from processors.envelope.parse import REASONS, Parser

__all__ = [
    "LABELS",
    "NO_END",
    "REASONS",
    "SENTIMENTS",
    "TOPICS",
    "AlertEvent",
    "Body",
    "DeadLetter",
    "Evidence",
    "Header",
    "Message",
    "Parser",
    "Result",
    "TopicWindow",
    "to_json",
]
