"""Stream state, each a pure picklable core with `copy()`, tested with plain lists.

`Sequencer` merges the source partitions' items into one event order; `Deduplicator`
drops exact repeats within a horizon; `StreamWindows` folds scored items into
event-time windows per key and closes them as the watermark passes; `StoryIndex`
finds the copies of one story.
"""

from processors.stream.dedupe import Deduplicator, id_key, text_key
from processors.stream.sequencer import PartitionProgress, Sequencer
from processors.stream.window import (
    MARKET,
    UNCLASSIFIED,
    Observation,
    StreamWindows,
    observe,
    window_keys,
)

__all__ = [
    "MARKET",
    "UNCLASSIFIED",
    "Deduplicator",
    "Observation",
    "PartitionProgress",
    "Sequencer",
    "StreamWindows",
    "id_key",
    "observe",
    "text_key",
    "window_keys",
]
