"""Stream state, each a pure picklable core with `copy()`/`resumed()`, tested with lists.

`Deduplicator` drops exact repeats within a horizon; `ReorderBuffer` holds items until
a frontier, a grace behind the newest, has passed them; `TopicWindows` folds scored
items into event-time windows per key and closes them as the watermark passes.
"""

from processors.stream.dedupe import Deduplicator, id_key, text_key
from processors.stream.frontier import Frontier, ReorderBuffer
from processors.stream.window import MARKET, UNCLASSIFIED, Observation, TopicWindows, observe

__all__ = [
    "MARKET",
    "UNCLASSIFIED",
    "Deduplicator",
    "Frontier",
    "Observation",
    "ReorderBuffer",
    "TopicWindows",
    "id_key",
    "observe",
    "text_key",
]
