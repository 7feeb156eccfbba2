"""The classroom edge agent (asyncio + aiomqtt). Imports only ``schemas`` and ``devices``."""
from .agent import AgentStats, EdgeAgent
from .config import (
    AgentConfig,
    ConfigError,
    QrLinesSourceConfig,
    SimulatedSensorSourceConfig,
    config_from_mapping,
    load_config,
)
from .device_config import DRIVERS, DeviceConfig
from .drivers import build_device_source, build_source
from .outbox import DROPPABLE_KINDS, AsyncOutbox, Outbox, OutboxError, OutboxFull, OutboxRow

__all__ = [
    "DRIVERS", "DROPPABLE_KINDS", "AgentConfig", "AgentStats", "AsyncOutbox", "ConfigError", "DeviceConfig",
    "EdgeAgent", "Outbox", "OutboxError", "OutboxFull", "OutboxRow", "QrLinesSourceConfig",
    "SimulatedSensorSourceConfig", "build_device_source", "build_source", "config_from_mapping", "load_config",
]
