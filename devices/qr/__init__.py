"""QR scanner integration."""
from .source import QrLineSource, ScriptedQrSource

__all__ = ["QrLineSource", "ScriptedQrSource"]
