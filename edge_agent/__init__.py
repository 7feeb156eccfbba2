"""The classroom edge agent (asyncio + aiomqtt). Imports only ``schemas`` and ``devices``."""
from .agent import AgentStats, EdgeAgent, build_source
from .config import (
    AgentConfig,
    ConfigError,
    QrLinesSourceConfig,
    SimulatedSensorSourceConfig,
    config_from_mapping,
    load_config,
)
from .outbox import DROPPABLE_KINDS, AsyncOutbox, Outbox, OutboxError, OutboxFull, OutboxRow

__all__ = [
    "DROPPABLE_KINDS", "AgentConfig", "AgentStats", "AsyncOutbox", "ConfigError", "EdgeAgent",
    "Outbox", "OutboxError", "OutboxFull", "OutboxRow", "QrLinesSourceConfig",
    "SimulatedSensorSourceConfig", "build_source", "config_from_mapping", "load_config",
]
