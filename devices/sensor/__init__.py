"""Room sensor integration (temperature, humidity, CO2)."""
from .source import DEFAULT_METRICS, MetricSpec, SimulatedSensorSource

__all__ = ["DEFAULT_METRICS", "MetricSpec", "SimulatedSensorSource"]
