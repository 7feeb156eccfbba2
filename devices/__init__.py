"""Device sources read by the edge agent. Imports nothing else of CampusHub."""
from .base import QrRead, Reading, SensorSample, Source
from .qr import QrLineSource, ScriptedQrSource
from .sensor import DEFAULT_METRICS, MetricSpec, SimulatedSensorSource

__all__ = [
    "DEFAULT_METRICS", "MetricSpec", "QrLineSource", "QrRead", "Reading", "ScriptedQrSource",
    "SensorSample", "SimulatedSensorSource", "Source",
]
