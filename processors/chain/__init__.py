"""The scoring chain: processors in configured order, one failing message isolated.

`Processor` is the contract (a batch of messages in, the same messages with a result
appended out); `ClassifyProcessor` runs one or more `Model`s on a task and merges them
with a named strategy (`STRATEGIES`); `Chain` runs the processors and turns a message
that breaks one into a dead letter without failing its batch.
"""

from processors.chain.base import Processor, Route, RoutedProcessor
from processors.chain.chain import BatchReport, Chain, ChainOutput
from processors.chain.classify import ClassifyProcessor, Member
from processors.chain.merge import STRATEGIES
from processors.chain.noop import NoOpProcessor

__all__ = [
    "STRATEGIES",
    "BatchReport",
    "Chain",
    "ChainOutput",
    "ClassifyProcessor",
    "Member",
    "NoOpProcessor",
    "Processor",
    "Route",
    "RoutedProcessor",
]
