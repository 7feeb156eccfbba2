"""QR scanner integration: line-oriented scanners, scripted reads, cameras (pyzbar)."""
from .camera import (
    Frame,
    ImageDirectoryFrames,
    IterableFrames,
    QrCameraSource,
    RawVideoFrames,
    decode_qr,
    load_image,
    v4l2_command,
)
from .source import QrLineSource, ScriptedQrSource

__all__ = [
    "Frame", "ImageDirectoryFrames", "IterableFrames", "QrCameraSource", "QrLineSource",
    "RawVideoFrames", "ScriptedQrSource", "decode_qr", "load_image", "v4l2_command",
]
