"""``[[devices]]`` entries of the agent's TOML file: kind, driver, port/path, options.

::

    [[devices]]
    name = "door-fp"              # optional, unique; default "<kind>-<index>"
    kind = "fingerprint"          # qr | fingerprint | sensor | terminal
    driver = "r30x"               # see DRIVERS
    port = "/dev/serial/by-id/usb-FTDI-if00"
    [devices.options]
    min_score = 0.25

Every driver's options are declared in :data:`DRIVERS` (type, default, check),
so validation, defaults, the docs and ``config_push`` overrides share one table.
Pure: no I/O.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from devices.sensor.source import DEFAULT_METRICS

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class DeviceConfigError(ValueError):
    """``where`` is the key path (``devices[1].options.baudrate``) for locating the line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class Option:
    kind: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] = lambda v: True
    rule: str = ""
    #: May a hub ``config_push`` change it at run time?
    pushable: bool = False


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _unit(v: float) -> bool:
    return 0 <= v <= 1


def _tz(v: float) -> bool:
    return -12 <= v <= 14 and v * 4 == int(v * 4)


def _port(v: int) -> bool:
    return 0 <= v <= 65535


_NUM = (int, float)
_BAUDS = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400}


@dataclass(frozen=True)
class DriverSpec:
    kind: str
    driver: str
    #: "port" (serial), "path", "path_or_device" (camera), or "" (none).
    needs: str
    options: dict[str, Option]
    summary: str


DRIVERS: dict[tuple[str, str], DriverSpec] = {
    ("qr", "lines"): DriverSpec("qr", "lines", "path", {}, "keyboard-wedge/serial scanner or file, one code per line"),
    ("qr", "camera"): DriverSpec("qr", "camera", "path_or_device", {
        "debounce_s": Option(_NUM, 2.0, lambda v: v >= 0, ">= 0", pushable=True),
        "interval_s": Option(_NUM, 0.2, _positive, "> 0"),
        "delete_after": Option(bool, False),
        "width": Option(int, 640, lambda v: 16 <= v <= 4096, "16..4096"),
        "height": Option(int, 480, lambda v: 16 <= v <= 4096, "16..4096"),
        "fps": Option(_NUM, 5.0, lambda v: 0 < v <= 60, "0 < fps <= 60"),
        "command": Option(list, [], lambda v: all(isinstance(a, str) for a in v), "an array of strings"),
    }, "camera decoded with pyzbar: a folder of snapshots (path) or a V4L2 device via ffmpeg"),
    ("fingerprint", "r30x"): DriverSpec("fingerprint", "r30x", "port", {
        "baudrate": Option(int, 57600, lambda v: v in _BAUDS, f"one of {sorted(_BAUDS)}"),
        "password": Option(int, 0, lambda v: 0 <= v <= 0xFFFFFFFF, "0..0xFFFFFFFF"),
        "address": Option(int, 0xFFFFFFFF, lambda v: 0 <= v <= 0xFFFFFFFF, "0..0xFFFFFFFF"),
        "capacity": Option(int, 1000, lambda v: 1 <= v <= 65535, "1..65535"),
        "poll_interval_s": Option(_NUM, 0.2, lambda v: 0 < v <= 10, "0 < s <= 10", pushable=True),
        "min_score": Option(_NUM, 0.0, _unit, "0..1", pushable=True),
        "score_full_scale": Option(int, 200, lambda v: 1 <= v <= 65535, "1..65535", pushable=True),
    }, "R30x serial fingerprint module (R305/R307/R503), matching on the module"),
    ("sensor", "serial_line"): DriverSpec("sensor", "serial_line", "port", {
        "baudrate": Option(int, 9600, lambda v: v in _BAUDS, f"one of {sorted(_BAUDS)}"),
        "max_line": Option(int, 256, lambda v: 16 <= v <= 4096, "16..4096"),
        "aliases": Option(dict, {}, lambda v: all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            and re.match(r"^[a-z][a-z0-9_]{0,31}$", p[0]) for p in v.values()),
            'a table of key = ["metric", "unit"]'),
    }, "microcontroller printing T:23.5,H:40 style lines"),
    ("sensor", "simulated"): DriverSpec("sensor", "simulated", "", {
        "interval_s": Option(_NUM, 5.0, _positive, "> 0"),
        "metrics": Option(list, ["temperature", "humidity", "co2"],
                          lambda v: bool(v) and all(m in DEFAULT_METRICS for m in v),
                          f"a non-empty array of {', '.join(DEFAULT_METRICS)}"),
        "seed": Option(int, None),
    }, "random-walk room sensor for demos"),
    ("terminal", "zkteco_adms"): DriverSpec("terminal", "zkteco_adms", "", {
        "listen": Option(str, "0.0.0.0", lambda v: bool(v), "a host address"),
        "listen_port": Option(int, 8081, _port, "0..65535"),
        "timezone": Option(_NUM, 0, _tz, "hours from UTC, -12..14 in quarter hours", pushable=True),
        "serial_numbers": Option(list, [], lambda v: all(isinstance(s, str) and s for s in v),
                                 "an array of terminal serial numbers"),
        "delay_s": Option(int, 10, lambda v: 1 <= v <= 3600, "1..3600"),
    }, "ZKTeco terminal pushing over ADMS / iclock HTTP to this agent"),
}


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    kind: str
    driver: str
    port: str | None = None
    path: str | None = None
    #: Complete (defaults filled in) and validated.
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def spec(self) -> DriverSpec:
        return DRIVERS[(self.kind, self.driver)]


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # bool is an int subclass; true is never a sensible number
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "table"}
    return " or ".join(dict.fromkeys("number" if k in (int, float) and len(kinds) > 1 else names.get(k, k.__name__)
                                     for k in kinds))


def check_option(spec: DriverSpec, key: str, value: Any, where: str) -> Any:
    """The validated value of one option (ints widened to float where numbers are expected)."""
    opt = spec.options.get(key)
    if opt is None:
        known = ", ".join(spec.options) or "none"
        raise DeviceConfigError(where, f"unknown option for {spec.kind}/{spec.driver} (known: {known})")
    if value is None and opt.default is None:
        return None
    if not _type_ok(value, opt.kind):
        raise DeviceConfigError(where, f"expected {_kind_name(opt.kind)}, got {type(value).__name__}")
    if not opt.check(value):
        raise DeviceConfigError(where, f"must be {opt.rule}, got {value!r}")
    return float(value) if opt.kind == _NUM else value


def parse_device(raw: Any, i: int, base_dir: Path) -> DeviceConfig:
    where = f"devices[{i}]"
    if not isinstance(raw, dict):
        raise DeviceConfigError(where, "expected a table")
    extra = set(raw) - {"name", "kind", "driver", "port", "path", "device", "options"}
    if extra:
        raise DeviceConfigError(f"{where}.{sorted(extra)[0]}", "unknown key (keys: name, kind, driver, "
                                                               "port, path, device, options)")
    for key in ("kind", "driver"):
        if key not in raw:
            raise DeviceConfigError(f"{where}.{key}", "required")
        if not isinstance(raw[key], str):
            raise DeviceConfigError(f"{where}.{key}", "expected a string")
    kind, driver = raw["kind"], raw["driver"]
    kinds = sorted({k for k, _ in DRIVERS})
    if kind not in kinds:
        raise DeviceConfigError(f"{where}.kind", f"expected one of {', '.join(kinds)}, got {kind!r}")
    spec = DRIVERS.get((kind, driver))
    if spec is None:
        drivers = sorted(d for k, d in DRIVERS if k == kind)
        raise DeviceConfigError(f"{where}.driver", f"{kind} drivers are {', '.join(drivers)}, got {driver!r}")
    name = raw.get("name", f"{kind}-{i}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DeviceConfigError(f"{where}.name", f"must match {_NAME_RE.pattern}")
    for key in ("port", "path", "device"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise DeviceConfigError(f"{where}.{key}", "expected a non-empty string")
    port = raw.get("port")
    path = raw.get("path")
    wanted = {"port": {"port"}, "path": {"path"}, "path_or_device": {"path", "device"}, "": set()}[spec.needs]
    given = {k for k in ("port", "path", "device") if k in raw}
    if given - wanted:
        bad = sorted(given - wanted)[0]
        raise DeviceConfigError(f"{where}.{bad}", f"not used by {kind}/{driver}")
    if wanted and len(given) != 1:
        need = " or ".join(sorted(wanted))
        raise DeviceConfigError(f"{where}.{sorted(wanted)[-1]}", f"{kind}/{driver} needs exactly one {need}")
    if path is not None and path != "-":
        path = str(base_dir / path)
    if "device" in raw:
        port = raw["device"]  # a camera device node is kept where serial ports are
    raw_options = raw.get("options", {})
    if not isinstance(raw_options, dict):
        raise DeviceConfigError(f"{where}.options", "expected a table ([devices.options])")
    options = {key: opt.default for key, opt in spec.options.items()}
    for key, value in raw_options.items():
        options[key] = check_option(spec, key, value, f"{where}.options.{key}")
    return DeviceConfig(name, kind, driver, port, path, options)


def check_devices(devices: tuple[DeviceConfig, ...]) -> None:
    """Rules across devices: unique names, at most one ADMS listener per port."""
    seen: dict[str, int] = {}
    ports: set[tuple[str, int]] = set()
    for i, dev in enumerate(devices):
        if dev.name in seen:
            raise DeviceConfigError(f"devices[{i}].name", f"{dev.name!r} is also devices[{seen[dev.name]}]")
        seen[dev.name] = i
        if dev.driver == "zkteco_adms":
            addr = (dev.options["listen"], dev.options["listen_port"])
            if addr in ports:
                raise DeviceConfigError(f"devices[{i}].options.listen_port", "already used by another terminal")
            ports.add(addr)


def with_overrides(devices: tuple[DeviceConfig, ...], overrides: Mapping[str, Any]) -> tuple[DeviceConfig, ...]:
    """Apply ``{"<device name>.<option>": value}`` (from ``config_push``); raises DeviceConfigError."""
    by_name = {d.name: d for d in devices}
    changed = {d.name: dict(d.options) for d in devices}
    for key, value in overrides.items():
        name, _, option = key.partition(".")
        dev = by_name.get(name)
        if dev is None or not option:
            raise DeviceConfigError(key, f"no device named {name!r}" if dev is None else "expected <device>.<option>")
        opt = dev.spec.options.get(option)
        if opt is None or not opt.pushable:
            pushable = [k for k, o in dev.spec.options.items() if o.pushable]
            raise DeviceConfigError(key, f"cannot be pushed (pushable: {', '.join(pushable) or 'none'})")
        changed[name][option] = check_option(dev.spec, option, value, key)
    return tuple(DeviceConfig(d.name, d.kind, d.driver, d.port, d.path, changed[d.name]) for d in devices)


_HEADER_RE = re.compile(r"^\s*\[\[\s*devices\s*\]\]")
_TABLE_RE = re.compile(r"^\s*\[")


def locate(text: str, where: str) -> int | None:
    """1-based line of ``devices[i].key`` / ``devices[i].options.key`` / top-level ``key`` in ``text``."""
    lines = text.splitlines()
    m = re.match(r"^devices\[(\d+)\](?:\.options)?(?:\.(\w+))?", where)
    if m is None:
        key = where.split(".")[0].split("[")[0]
        for n, line in enumerate(lines, 1):
            if _TABLE_RE.match(line):
                return None  # top-level keys come before the first table
            if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return n
        return None
    index, key = int(m.group(1)), m.group(2)
    headers = [n for n, line in enumerate(lines) if _HEADER_RE.match(line)]
    if index >= len(headers):
        return None
    start = headers[index]
    if key:
        for n in range(start + 1, len(lines)):
            if _HEADER_RE.match(lines[n]) or (_TABLE_RE.match(lines[n]) and "devices.options" not in lines[n]):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", lines[n]):
                return n + 1
    return start + 1
