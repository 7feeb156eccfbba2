"""Room sensor integration (temperature, humidity, CO2): simulated and line-based serial."""
from .serial_line import LineParser, SerialLineSensorSource
from .source import DEFAULT_METRICS, MetricSpec, SimulatedSensorSource

__all__ = ["DEFAULT_METRICS", "LineParser", "MetricSpec", "SerialLineSensorSource", "SimulatedSensorSource"]
