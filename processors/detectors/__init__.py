"""Detectors judge each closed window of a topic against that topic's own history.

One detector per module behind the small `Detector` base; `DETECTORS` names them for
the configuration.
"""

from processors.detectors.base import Assessment, Detector
from processors.detectors.ewma import EwmaDetector

DETECTORS: dict[str, type[Detector]] = {"ewma": EwmaDetector}

__all__ = ["DETECTORS", "Assessment", "Detector", "EwmaDetector"]
