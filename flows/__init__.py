"""Bytewax dataflows, their sources and sinks, the metrics endpoint and the CLI.

Torch's OpenMP threads are told to sleep, not spin, between parallel regions (unless the
environment says otherwise), here because it only takes effect before torch is first
imported: on cores shared with a broker or other jobs, spinning threads waited on one
that was not running, and scoring slowed two to three times (docs/performance.md).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
