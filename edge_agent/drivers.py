"""Turn ``[[devices]]`` / ``[[sources]]`` entries into running driver objects. Pure construction."""
from __future__ import annotations

from devices.base import Source
from devices.fingerprint.r30x import R30xSource
from devices.qr.camera import ImageDirectoryFrames, QrCameraSource, RawVideoFrames, v4l2_command
from devices.qr.source import QrLineSource
from devices.sensor.serial_line import SerialLineSensorSource
from devices.sensor.source import SimulatedSensorSource

from .config import QrLinesSourceConfig, SimulatedSensorSourceConfig, SourceConfig
from .device_config import DeviceConfig


def build_source(cfg: SourceConfig) -> Source:
    """The device source described by one legacy ``[[sources]]`` entry."""
    if isinstance(cfg, QrLinesSourceConfig):
        return QrLineSource.open(cfg.path, name=f"qr_lines:{cfg.path}")
    if isinstance(cfg, SimulatedSensorSourceConfig):
        return SimulatedSensorSource(interval_s=cfg.interval_s, metrics=cfg.metrics, seed=cfg.seed)
    raise TypeError(f"unknown source config {cfg!r}")


def build_device_source(dev: DeviceConfig) -> Source:
    """The :class:`devices.base.Source` of one ``[[devices]]`` entry (not for terminals:
    an ADMS terminal is served by :class:`edge_agent.adms.AdmsEndpoint`)."""
    o = dev.options
    if (dev.kind, dev.driver) == ("qr", "lines"):
        assert dev.path is not None
        return QrLineSource.open(dev.path, name=dev.name)
    if (dev.kind, dev.driver) == ("qr", "camera"):
        if dev.path is not None:
            frames: ImageDirectoryFrames | RawVideoFrames = ImageDirectoryFrames(
                dev.path, interval_s=o["interval_s"], delete_after=o["delete_after"])
        else:
            assert dev.port is not None
            argv = o["command"] or v4l2_command(dev.port, o["width"], o["height"], o["fps"])
            frames = RawVideoFrames(argv, o["width"], o["height"])
        return QrCameraSource(frames, name=dev.name, debounce_s=o["debounce_s"])
    if (dev.kind, dev.driver) == ("fingerprint", "r30x"):
        assert dev.port is not None
        return R30xSource(dev.port, name=dev.name, baudrate=o["baudrate"], password=o["password"],
                          address=o["address"], capacity=o["capacity"], poll_interval_s=o["poll_interval_s"],
                          min_score=o["min_score"], score_full_scale=o["score_full_scale"])
    if (dev.kind, dev.driver) == ("sensor", "serial_line"):
        assert dev.port is not None
        aliases = {k: (v[0], v[1]) for k, v in o["aliases"].items()}
        return SerialLineSensorSource(dev.port, name=dev.name, baudrate=o["baudrate"], aliases=aliases,
                                      max_line=o["max_line"])
    if (dev.kind, dev.driver) == ("sensor", "simulated"):
        return SimulatedSensorSource(interval_s=o["interval_s"], metrics=o["metrics"], seed=o["seed"],
                                     name=dev.name)
    raise TypeError(f"no source for {dev.kind}/{dev.driver}")
