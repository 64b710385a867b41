"""Detection: judge each closed window against its key's own history, raise alerts.

One detector per module behind the small `Detector` base (scoring apart from
thresholding); `DETECTORS` names the negative-surge kinds for the configuration,
`VolumeDetector` judges news volume beside them, and `BurstDetector` the market-wide
key's bursts of negative stories that share a word. `TopicMonitor` holds a key's
detector and the alert it may have open: firing once, resolved once.
"""

from processors.detection.base import Assessment, Detector
from processors.detection.burst import BurstDetector
from processors.detection.evidence import EvidenceDetector
from processors.detection.ewma import EwmaDetector
from processors.detection.lifecycle import (
    ALERTNAME,
    ALERTNAMES,
    BURST_ALERTNAME,
    VOLUME_ALERTNAME,
    TopicMonitor,
    fingerprint,
)
from processors.detection.volume import VolumeDetector

DETECTORS: dict[str, type[Detector]] = {"evidence": EvidenceDetector, "ewma": EwmaDetector}

__all__ = [
    "ALERTNAME",
    "ALERTNAMES",
    "BURST_ALERTNAME",
    "DETECTORS",
    "VOLUME_ALERTNAME",
    "Assessment",
    "BurstDetector",
    "Detector",
    "EvidenceDetector",
    "EwmaDetector",
    "TopicMonitor",
    "VolumeDetector",
    "fingerprint",
]
