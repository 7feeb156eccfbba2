"""What Mosquitto does when one client floods: broker memory, lost messages and other devices' delay, per queue setting.

Each configuration gets a private broker (``/usr/sbin/mosquitto -c <generated conf>`` on a free
loopback port, anonymous, no persistence; the shared 127.0.0.1:1883 is never touched) and the
same load, from three child processes so that none competes for another's GIL:

* the *flooder*: one MQTT 5 connection publishing QoS 1 as fast as its connection allows
  (``--flooder ignores``: paho with no inflight cap, as a hostile or buggy client; ``obeys``: it
  caps its inflight at the broker's CONNACK Receive Maximum, as a compliant client would; paho 2.x
  itself ignores that property, and so does the edge agent, which caps at its own 16);
* the *devices*: ``--devices`` well-behaved connections, each publishing one QoS 1 message per
  second (staggered), recording which of them the broker acknowledged (PUBACK). A device the
  broker disconnects (``memory_limit``) does not reconnect: its later messages are not sent, and
  what it had in flight is not counted as acknowledged (an edge agent would resend both);
* the *consumer*, in the hub's role: a persistent session (clean start once, session expiry 300 s,
  Receive Maximum 1000) subscribed to everything at QoS 1, that takes messages off its socket
  only while fewer than 1,024 await processing (the hub's inbound channel) and processes
  (acknowledges) them at ``--consumer-rate`` per second: the hub's sustained ingest rate.

The flood and the devices run for ``--duration`` seconds; the consumer then keeps draining until
it has everything the broker acknowledged or nothing arrives for ``--idle`` seconds. Measured per
configuration:

* broker RSS: peak VmRSS sampled every 100 ms, and at the end;
* lost: messages the broker PUBACKed to their publisher that the consumer never received
  (devices' and flooder's separately), by (publisher, sequence number);
* delay: publish -> processed by the consumer for the devices' messages (p50, p99, max);
* flood rate: messages/s the broker acknowledged to the flooder, and the flooder's disconnects.

The first configuration is the baseline (Mosquitto's defaults); ratios are against it, same run.

    .venv/bin/python bench/broker_flood.py [--duration 6] [--devices 50] [--consumer-rate 10000]
        [--configs default,compose,...] [--flooder ignores|obeys] [--queue-cost 100000]
        [--json] [--save FILE]

``chosen`` is the configuration docs/reliability.md recommends; bench/fairness.py runs the real
hub against any of these configurations (``--broker``). ``--queue-cost N`` also measures broker
RSS per message queued for an offline session (N messages, then checks they all arrive).

A benchmark: no assertions. Progress goes to stderr; the table (or ``--json``) to stdout.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, cast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fmt, free_port, load_average, no_nan, percentile, progress  # noqa: E402 - bench/ is not a package

MOSQUITTO = os.environ.get("CAMPUSHUB_MOSQUITTO", "/usr/sbin/mosquitto")
PAYLOAD_SIZE = 160  # about one signed sensor-reading event on the wire

#: name -> (broker configuration lines, what it is). The first is the baseline.
CONFIGS: dict[str, tuple[list[str], str]] = {
    "default": ([], "Mosquitto 2.0 defaults: max_queued_messages 1000, max_inflight_messages 20"),
    "compose": (["max_queued_messages 0", "max_inflight_messages 0"], "docker-compose.yml: no queue limit"),
    "embedded": (["max_queued_messages 100000"], "hub/embedded/broker.py"),
    "inflight1": (["max_queued_messages 0", "max_inflight_messages 1"], "no queue limit, inflight 1"),
    "inflightbytes": (["max_queued_messages 0", "max_inflight_bytes 65536"], "no queue limit, 64 KiB inflight"),
    "qbytes4m": (["max_queued_messages 0", "max_queued_bytes 4194304"], "queue bounded at 4 MiB per client"),
    "qbytes64m": (["max_queued_messages 0", "max_queued_bytes 67108864"], "queue bounded at 64 MiB per client"),
    "memlimit16m": (["max_queued_messages 0", "memory_limit 16777216"], "no queue limit, broker heap 16 MiB"),
    "memlimit64m": (["max_queued_messages 0", "memory_limit 67108864"], "no queue limit, broker heap 64 MiB"),
    "quarantine": (["max_queued_messages 0", "max_queued_bytes 268435456", "max_inflight_messages 20"],
                   "chosen + an ACL that denies the flooder's topic: the broker refuses its publishes"),
    "chosen": (["max_queued_messages 0", "max_queued_bytes 268435456", "max_inflight_messages 20"],
               "recommended (docs/reliability.md): no count limit, 256 MiB of payload per session, inflight 20"),
}


#: ACL files by configuration name. ``quarantine`` admits everyone to everything except the
#: flooder's topics: this benchmark's ``<prefix>/flood`` and bench/fairness.py's flooding device
#: (the first seeded device, ``dev-room-001``): what a broker does once a device is quarantined.
ACL_FILES: dict[str, str] = {
    "quarantine": "topic readwrite #\ntopic deny +/flood\ntopic deny +/v1/dev/dev-room-001/up\n",
}


# =========================================================================== a private broker


@dataclass
class PrivateBroker:
    """A Mosquitto started by this process on a loopback port; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    process: subprocess.Popen
    port: int
    directory: str

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.process.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "mosquitto.log")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_mosquitto(settings: list[str], acl: str | None = None) -> PrivateBroker:
    """Start ``mosquitto -c conf`` on a free loopback port with ``settings`` appended; wait until it accepts.

    ``acl``: the text of an ACL file for it (anonymous clients get its rules).
    """
    directory = tempfile.mkdtemp(prefix="campushub-flood-")
    port = free_port()
    conf = os.path.join(directory, "mosquitto.conf")
    if acl is not None:
        with open(os.path.join(directory, "acl"), "w") as f:
            f.write(acl)
        settings = [*settings, "acl_file " + os.path.join(directory, "acl")]
    with open(conf, "w") as f:
        f.write("\n".join([f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
                           "log_dest file " + os.path.join(directory, "mosquitto.log"),
                           "log_type error", "log_type warning", "log_type notice",
                           # As root, stay root: the `mosquitto` user could not write the log in our 0700 directory.
                           f"user {getpass.getuser()}", *settings]) + "\n")
    process = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return accepting(PrivateBroker(process, port, directory), f"with {settings}")


def accepting(broker: PrivateBroker, what: str = "") -> PrivateBroker:
    """``broker`` once it accepts connections (10 s at most); stopped, and RuntimeError, if it exits or does not."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            log = broker.log()
            broker.stop()
            raise RuntimeError(f"mosquitto exited ({broker.process.returncode}) {what}: {log}")
        try:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=0.2):
                return broker
        except OSError:
            time.sleep(0.05)
    broker.stop()
    raise RuntimeError("mosquitto did not accept connections within 10 s")


# =========================================================================== child processes


def _payload(kind: str, source: int, seq: int) -> bytes:
    head = f"{kind}:{source}:{seq}:{time.time():.6f}:".encode()
    return head + b"x" * max(0, PAYLOAD_SIZE - len(head))


def _message_maker(setup: dict[str, Any]) -> Callable[[str, int, int], tuple[str, bytes, str | None]]:
    """``make(kind, source, seq) -> (topic, payload, event id or None)``; kind "f" = flooder, "d" = device.

    Plain mode (this benchmark): ``<prefix>/flood`` or ``<prefix>/dev/<n>`` and a ``_payload``. Signed
    mode (``setup["signed"]``, bench/fairness.py): a signed SensorReadingEvent of the seeded device
    (the flooder is ``signed["flooder"]``, device n is ``signed["devices"][n]``) on its uplink topic.
    """
    signed = setup.get("signed")
    if not signed:
        def plain(kind: str, source: int, seq: int) -> tuple[str, bytes, str | None]:
            topic = f"{setup['prefix']}/flood" if kind == "f" else f"{setup['prefix']}/dev/{source}"
            return topic, _payload(kind, source, seq), None

        return plain

    from schemas import SensorReading, SensorReadingEvent, SignatureAlgorithm, Topics, encode_event, new_event_id

    topics = Topics(signed["topic_prefix"])
    body = SensorReading(metric="temperature", value=20.5, unit="C")

    def keyed(d: dict[str, str]) -> tuple[str, str, SignatureAlgorithm, bytes]:
        return d["id"], topics.uplink(d["id"]), cast(SignatureAlgorithm, d["alg"]), bytes.fromhex(d["key"])

    flooder, devices = keyed(signed["flooder"]), [keyed(d) for d in signed["devices"]]

    def make(kind: str, source: int, seq: int) -> tuple[str, bytes, str | None]:
        device, topic, alg, key = flooder if kind == "f" else devices[source]
        event_id = new_event_id()
        event = SensorReadingEvent(v=1, id=event_id, device=device, ts=int(time.time() * 1000), seq=seq + 1,
                                   body=body)
        return topic, encode_event(event, alg, key), event_id.hex()

    return make


def _client(client_id: str, **kwargs: Any):
    import paho.mqtt.client as mqtt

    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs)


def _wait_connected(c, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not c.is_connected():
        if time.monotonic() > deadline:
            raise SystemExit("no CONNACK")
        c.loop(0.05)


def flooder_main(setup: dict[str, Any]) -> None:
    """One connection publishing QoS 1 as fast as it can for ``duration`` s; prints counts and acked sequence numbers."""
    import paho.mqtt.client as mqtt

    acked: list[int] = []
    mid_seq: dict[int, int] = {}
    server_receive_maximum: list[int] = []
    disconnects: list[str] = []

    def on_connect(client, userdata, flags, rc, props) -> None:
        rm = getattr(props, "ReceiveMaximum", None) if props is not None else None
        server_receive_maximum.append(rm if rm is not None else 65535)

    def on_publish(client, userdata, mid, rc, props) -> None:
        seq = mid_seq.pop(mid, None)
        if seq is not None and not rc.is_failure:
            acked.append(seq)

    def on_disconnect(client, userdata, flags, rc, props) -> None:
        if not done:
            disconnects.append(str(rc))

    def connected_client(inflight: int):
        c = _client(f"{setup['prefix']}-flooder")
        if setup.get("logins"):  # bench/fairness.py --broker generated: the flooding device's own account
            c.username_pw_set(*setup["logins"]["flooder"])
        c.max_inflight_messages_set(inflight)
        c.max_queued_messages_set(2000)
        c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
        c.connect("127.0.0.1", setup["port"], keepalive=30, clean_start=True)
        _wait_connected(c)
        return c

    done = False
    c = connected_client(0)  # 0: no cap (paho's own default is 20)
    if setup["obeys"]:  # paho cannot change its inflight cap once connected: learn it, then connect again
        done = True
        c.disconnect()
        c.loop(0.05)
        done = False
        c = connected_client(server_receive_maximum[-1])
    print("ready", flush=True)
    sys.stdin.readline()  # go
    make = _message_maker(setup)
    seq = 0
    t0 = time.perf_counter()
    end = t0 + setup["duration"]
    while time.perf_counter() < end:
        if c.is_connected():
            for _ in range(200):
                topic, payload, _ = make("f", 0, seq)
                info = c.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                mid_seq[info.mid] = seq
                seq += 1
            c.loop(0)
        else:
            try:
                c.reconnect()
                _wait_connected(c, 2)
            except (OSError, SystemExit):
                time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    for _ in range(50):  # the last PUBACKs
        c.loop(0.02)
    done = True
    c.disconnect()
    c.loop(0.05)
    print(json.dumps({"published": seq, "acked": acked, "elapsed_s": elapsed, "disconnects": disconnects,
                      "server_receive_maximum": server_receive_maximum}), flush=True)


def devices_main(setup: dict[str, Any]) -> None:
    """``devices`` connections, each publishing 1/s (staggered) for ``duration`` s; prints acked sequence numbers."""
    n = setup["devices"]
    acked: list[list[int]] = [[] for _ in range(n)]
    acked_ids: list[str] = []  # signed mode: event ids the broker acknowledged
    mid_seq: list[dict[int, tuple[int, str | None]]] = [{} for _ in range(n)]
    make = _message_maker(setup)
    disconnects = 0

    def on_publish(client, userdata, mid, rc, props) -> None:
        sent = mid_seq[userdata].pop(mid, None)
        if sent is not None and not rc.is_failure:
            acked[userdata].append(sent[0])
            if sent[1] is not None:
                acked_ids.append(sent[1])

    def on_disconnect(client, userdata, flags, rc, props) -> None:
        nonlocal disconnects
        if not done:
            disconnects += 1

    done = False

    clients = []
    sel = selectors.DefaultSelector()
    for d in range(n):
        c = _client(f"{setup['prefix']}-dev{d}", userdata=d)
        if setup.get("logins"):  # bench/fairness.py --broker generated: each device's own account
            c.username_pw_set(*setup["logins"]["devices"][d])
        c.max_inflight_messages_set(16)  # the edge agent's default
        c.on_publish, c.on_disconnect = on_publish, on_disconnect
        c.connect("127.0.0.1", setup["port"], keepalive=30, clean_start=True)
        sel.register(c.socket(), selectors.EVENT_READ, c)
        clients.append(c)
    deadline = time.monotonic() + 20
    while not all(c.is_connected() for c in clients) and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            key.data.loop_read(10)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    t0 = time.perf_counter()
    seqs = [0] * n
    published = 0
    end = t0 + setup["duration"]
    while True:
        now = time.perf_counter()
        if now < end:
            for d, c in enumerate(clients):
                due = int((now - t0) + d / n)  # device d publishes at t0 + k - d/n (staggered over the second)
                while seqs[d] <= due and c.is_connected():
                    topic, payload, event_id = make("d", d, seqs[d])
                    info = c.publish(topic, payload, qos=1)
                    mid_seq[d][info.mid] = (seqs[d], event_id)
                    seqs[d] += 1
                    published += 1
                    if c.want_write():
                        c.loop_write()
        elif now > end + 3 or not any(mid_seq):
            break
        for key, _ in sel.select(0.005):
            key.data.loop_read(10)
    done = True
    for c in clients:
        c.disconnect()
        c.loop_write()
    print(json.dumps({"published": published, "acked": acked, "acked_ids": acked_ids,
                      "disconnects": disconnects}), flush=True)


def consumer_main(setup: dict[str, Any]) -> None:
    """The hub's role: persistent session, at most 1,024 waiting, processes ``rate``/s; prints what it got.

    stdin: "go", then one JSON line {"flood": n, "devices": n} of acknowledged totals once the
    publishers are done: it drains until it has them all or nothing arrives for ``idle`` s.
    """
    capacity = 1024
    pending: deque[tuple[int, bytes]] = deque()
    expected: dict[str, int] = {}
    stdin_lines: deque[str] = deque()

    def read_stdin() -> None:
        for line in sys.stdin:
            stdin_lines.append(line)

    def on_message(client, userdata, message) -> None:
        pending.append((message.mid, message.payload))

    disconnects: list[str] = []

    def on_disconnect(client, userdata, flags, rc, props) -> None:
        if not done:
            disconnects.append(str(rc))

    done = False
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = _client(f"{setup['prefix']}-consumer", manual_ack=True)
    c.on_message, c.on_disconnect = on_message, on_disconnect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    props.ReceiveMaximum = 1000
    import paho.mqtt.client as mqtt

    c.connect("127.0.0.1", setup["port"], keepalive=30, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
              properties=props)
    _wait_connected(c)
    c.subscribe(f"{setup['prefix']}/#", qos=1)
    for _ in range(20):
        c.loop(0.01)
    threading.Thread(target=read_stdin, daemon=True).start()
    print("ready", flush=True)
    while not stdin_lines:
        c.loop(0.01)
    stdin_lines.popleft()  # go
    flood_received = 0
    device_seen: set[tuple[int, int]] = set()
    duplicates = 0
    delays: list[float] = []
    rate = setup["rate"]
    budget = 0.0
    last = time.perf_counter()
    last_message = last
    sock = c.socket()
    reconnects = 0
    drain_deadline = float("inf")
    while True:
        now = time.perf_counter()
        if stdin_lines and not expected:
            expected = json.loads(stdin_lines.popleft())
            drain_deadline = now + setup["drain_timeout"]
            last_message = now  # idle counts from here
        if expected and (now - last_message > setup["idle"] or now > drain_deadline):
            break
        if not c.is_connected():  # as the hub does: resume the session; unacked messages come again
            pending.clear()
            reconnects += 1
            try:
                c.reconnect()
                _wait_connected(c, 5)
            except (OSError, SystemExit):
                time.sleep(0.1)
            continue
        budget = min(budget + (now - last) * rate, capacity)
        last = now
        while pending and budget >= 1:
            mid, payload = pending.popleft()
            budget -= 1
            kind, source, seq, t_pub, _ = payload.split(b":", 4)
            if kind == b"f":
                flood_received += 1
            else:
                key = (int(source), int(seq))
                if key in device_seen:
                    duplicates += 1
                else:
                    device_seen.add(key)
                    delays.append(time.time() - float(t_pub))
            c.ack(mid, 1)
            last_message = now
        if len(pending) < capacity:
            c.loop_read(min(64, capacity - len(pending)))  # backpressure: the hub stops reading when its channel is full
        if c.want_write():
            c.loop_write()
        c.loop_misc()
        if expected and not pending and flood_received >= expected["flood"] and len(device_seen) >= expected["devices"]:
            break
        sock = c.socket()
        if not pending and sock is not None:
            select.select([sock], [], [], 0.002)
    done = True
    c.disconnect()  # the session expires 300 s later; the private broker is stopped before that anyway
    c.loop(0.05)
    print(json.dumps({"flood_received": flood_received, "device_received": sorted(device_seen),
                      "duplicates": duplicates, "delays": delays, "disconnects": disconnects,
                      "reconnects": reconnects}), flush=True)


def child_process(role: str, setup: dict[str, Any]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(json.dumps(setup) + "\n")
    p.stdin.flush()
    return p


def expect_ready(p: subprocess.Popen, role: str) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{role} failed to start: {line!r}")


def _result(p: subprocess.Popen, timeout: float) -> dict[str, Any]:
    out, _ = p.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


# =========================================================================== one configuration


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    settings, what = CONFIGS[name]
    broker = start_private_mosquitto(settings, ACL_FILES.get(name))
    prefix = f"flood-{name}"
    base = {"port": broker.port, "prefix": prefix, "duration": args.duration}
    samples: list[int] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            samples.append(broker.rss_bytes())
            stop_sampling.wait(0.1)

    procs: list[subprocess.Popen] = []
    try:
        rss_idle = broker.rss_bytes()
        consumer = child_process("consumer", {**base, "rate": args.consumer_rate, "idle": args.idle,
                                       "drain_timeout": args.drain_timeout})
        procs.append(consumer)
        expect_ready(consumer, "consumer")
        flooder = child_process("flooder", {**base, "obeys": args.flooder == "obeys"})
        devices = child_process("devices", {**base, "devices": args.devices})
        procs += [flooder, devices]
        expect_ready(flooder, "flooder")
        expect_ready(devices, "devices")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        for p in (consumer, flooder, devices):
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        flood = _result(flooder, args.duration + 30)
        dev = _result(devices, args.duration + 30)
        publish_s = time.perf_counter() - t0
        rss_after_publish = broker.rss_bytes()
        device_acked = {(d, s) for d, seqs in enumerate(dev["acked"]) for s in seqs}
        assert consumer.stdin is not None
        consumer.stdin.write(json.dumps({"flood": len(flood["acked"]), "devices": len(device_acked)}) + "\n")
        consumer.stdin.flush()
        cons = _result(consumer, args.drain_timeout + 30)
        drain_s = time.perf_counter() - t0 - publish_s
        stop_sampling.set()
        sampler.join()
        received = {tuple(x) for x in cons["device_received"]}
        delays = sorted(cons["delays"])
        log = broker.log()
        return {
            "config": name, "settings": settings, "what": what, "alive": broker.process.poll() is None,
            "rss_idle_mib": rss_idle / 2**20, "rss_peak_mib": max(samples or [0]) / 2**20,
            "rss_after_publish_mib": rss_after_publish / 2**20,
            "rss_end_mib": broker.rss_bytes() / 2**20,
            "flood_published": flood["published"], "flood_acked": len(flood["acked"]),
            "flood_acked_per_s": len(flood["acked"]) / flood["elapsed_s"],
            "flood_received": cons["flood_received"],
            "flood_lost": max(0, len(flood["acked"]) - cons["flood_received"]),
            "flood_disconnects": flood["disconnects"], "server_receive_maximum": flood["server_receive_maximum"],
            "device_published": dev["published"], "device_acked": len(device_acked),
            "device_received": len(received & device_acked),
            "device_lost": len(device_acked - received),
            "device_disconnects": dev["disconnects"],
            "consumer_disconnects": cons["disconnects"], "consumer_reconnects": cons["reconnects"],
            "duplicates": cons["duplicates"],
            "delay_p50_ms": percentile(delays, 50) * 1000, "delay_p99_ms": percentile(delays, 99) * 1000,
            "delay_max_ms": (delays[-1] * 1000) if delays else float("nan"),
            "drain_s": drain_s,
            "broker_dropping_logged": "Outgoing messages are being dropped" in log,
            "broker_log_notes": [line for line in log.splitlines()
                                 if "dropped" in line or "memory" in line.lower()][:5],
        }
    finally:
        stop_sampling.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        broker.stop()


# =========================================================================== the cost of a queued message


def queue_cost(settings: list[str], n: int) -> dict[str, Any]:
    """Broker RSS per message queued for an offline persistent session (the hub restarting), and that it all comes back.

    A session subscribes and disconnects; one publisher (inflight 100) sends ``n`` QoS 1 messages,
    all acknowledged; RSS is read before and after; the session then reconnects and receives them.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    broker = start_private_mosquitto(settings)
    try:
        received = 0

        def on_message(client, userdata, message) -> None:
            nonlocal received
            received += 1

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        sub = _client("cost-consumer")
        sub.on_message = on_message
        sub.connect("127.0.0.1", broker.port, keepalive=30, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=props)
        _wait_connected(sub)
        sub.subscribe("cost/#", qos=1)
        for _ in range(20):
            sub.loop(0.01)
        sub.disconnect()
        sub.loop(0.05)
        time.sleep(0.2)
        rss0 = broker.rss_bytes()
        acked = 0

        def on_publish(client, userdata, mid, rc, props) -> None:
            nonlocal acked
            acked += 1

        pub = _client("cost-publisher")
        pub.max_inflight_messages_set(100)
        pub.max_queued_messages_set(1000)
        pub.on_publish = on_publish
        pub.connect("127.0.0.1", broker.port, keepalive=30, clean_start=True)
        _wait_connected(pub)
        i = 0
        deadline = time.monotonic() + 120
        while acked < n and time.monotonic() < deadline:
            while i < n and pub.publish("cost/x", _payload("f", 0, i), qos=1).rc == mqtt.MQTT_ERR_SUCCESS:
                i += 1
            pub.loop(0.001)
        pub.disconnect()
        pub.loop(0.05)
        time.sleep(0.2)
        rss1 = broker.rss_bytes()
        sub.reconnect()
        deadline = time.monotonic() + 60
        last_count, last_change = -1, time.monotonic()
        while received < acked and time.monotonic() < deadline and time.monotonic() - last_change < 5:
            sub.loop(0.01)
            if received != last_count:
                last_count, last_change = received, time.monotonic()
        sub.disconnect()
        sub.loop(0.05)
        per_message = (rss1 - rss0) / acked if acked else float("nan")
        return {"settings": settings, "acked": acked, "received_after_reconnect": received,
                "lost": max(0, acked - received), "rss_before_mib": rss0 / 2**20, "rss_queued_mib": rss1 / 2**20,
                "bytes_per_queued_message": per_message, "payload_bytes": PAYLOAD_SIZE,
                "rss_per_payload_byte": per_message / PAYLOAD_SIZE}
    finally:
        broker.stop()


# =========================================================================== output


RATIO_KEYS = ("rss_peak_mib", "flood_acked_per_s", "delay_p99_ms")


def print_table(report: dict[str, Any]) -> None:
    c = report["config"]
    print(f"broker_flood: Mosquitto {report['mosquitto']}, flooder ({c['flooder']} Receive Maximum) for "
          f"{c['duration']:.0f}s, {c['devices']} devices at 1/s, consumer processes {c['consumer_rate']:,.0f}/s; "
          f"{PAYLOAD_SIZE} B payloads; load average {' '.join(map(str, report['load_average']))} at start")
    print()
    head = (f"{'config':<14} {'RSS peak':>8} {'end':>6} {'flood ack/s':>11} {'disc':>4} {'flood lost':>10} "
            f"{'dev acked':>9} {'dev lost':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'drain s':>7} "
            f"{'RSS x':>6} {'p99 x':>6}")
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        q = r.get("vs_baseline", {})
        print(f"{r['config']:<14} {fmt(r['rss_peak_mib'], '.1f'):>7}M {fmt(r['rss_end_mib'], '.1f'):>5}M "
              f"{fmt(r['flood_acked_per_s'], ',.0f'):>11} {len(r['flood_disconnects']):>4} "
              f"{r['flood_lost']:>10,} {r['device_acked']:>9,} {r['device_lost']:>8,} "
              f"{fmt(r['delay_p50_ms'], ',.0f'):>8} {fmt(r['delay_p99_ms'], ',.0f'):>8} "
              f"{fmt(r['delay_max_ms'], ',.0f'):>8} {fmt(r['drain_s'], '.1f'):>7} "
              f"{fmt(q.get('rss_peak_mib'), '.2f'):>5}x {fmt(q.get('delay_p99_ms'), '.2f'):>5}x"
              + ("" if r["alive"] else "  BROKER DIED"))
    print()
    for r in report["results"]:
        print(f"  {r['config']:<14} {' / '.join(r['settings']) or '(none)'}: {r['what']}"
              + (f"; flooder disconnected: {', '.join(sorted(set(r['flood_disconnects'])))}"
                 if r["flood_disconnects"] else "")
              + (f"; consumer disconnected: {', '.join(sorted(set(r['consumer_disconnects'])))}"
                 if r["consumer_disconnects"] else ""))
    q = report.get("queue_cost")
    if q:
        print(f"\nqueue cost ({' / '.join(q['settings'])}): {q['acked']:,} messages queued for an offline session "
              f"raised broker RSS from {q['rss_before_mib']:.1f} to {q['rss_queued_mib']:.1f} MiB = "
              f"{q['bytes_per_queued_message']:,.0f} B per message ({q['rss_per_payload_byte']:.1f}x its "
              f"{q['payload_bytes']} B payload); after reconnecting the session received {q['received_after_reconnect']:,}"
              f" (lost {q['lost']:,})")
    print("\nlost = PUBACKed to its publisher, never received by the consumer. x = ratio to the first configuration "
          "(the baseline), same run.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=["flooder", "devices", "consumer"], help=argparse.SUPPRESS)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, first = baseline: "
                    + ", ".join(CONFIGS))
    ap.add_argument("--duration", type=float, default=6.0, help="seconds of flood (and of device traffic)")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--consumer-rate", type=float, default=10000.0,
                    help="messages/s the consumer processes (the hub drained ~11,000/s in bench/fairness.py)")
    ap.add_argument("--flooder", choices=["ignores", "obeys"], default="ignores",
                    help="whether the flooder caps its inflight at the broker's Receive Maximum")
    ap.add_argument("--idle", type=float, default=3.0, help="drain ends after this long with nothing received")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="the consumer's drain ends after this anyway")
    ap.add_argument("--queue-cost", type=int, default=100_000,
                    help="messages queued for an offline session to measure RSS per message (0: skip)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON report to FILE")
    args = ap.parse_args()
    if args.role:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
        setup = json.loads(sys.stdin.readline())
        {"flooder": flooder_main, "devices": devices_main, "consumer": consumer_main}[args.role](setup)
        return
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    version = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.split("\n")[0].split()[-1]
    report: dict[str, Any] = {
        "config": {"duration": args.duration, "devices": args.devices, "consumer_rate": args.consumer_rate,
                   "flooder": args.flooder, "payload_bytes": PAYLOAD_SIZE},
        "mosquitto": version, "load_average": load_average(), "cpus": os.cpu_count(), "results": []}
    for name in names:
        progress(f"broker_flood: {name} ({' / '.join(CONFIGS[name][0]) or 'defaults'})...")
        r = run_config(name, args)
        progress(f"  RSS peak {r['rss_peak_mib']:.1f} MiB, flood {r['flood_acked_per_s']:,.0f}/s acked, "
                 f"lost {r['device_lost']} device / {r['flood_lost']:,} flood, p99 {r['delay_p99_ms']:,.0f} ms")
        report["results"].append(r)
    if args.queue_cost:
        progress(f"broker_flood: queue cost of {args.queue_cost:,} messages for an offline session...")
        report["queue_cost"] = queue_cost(CONFIGS["chosen"][0], args.queue_cost)
    base = report["results"][0]
    for r in report["results"]:
        r["vs_baseline"] = {k: (r[k] / base[k] if base.get(k) else float("nan")) for k in RATIO_KEYS}
    emit_report(report, args, print_table)


def emit_report(report: dict[str, Any], args: argparse.Namespace,
                print_table: Callable[[dict[str, Any]], None]) -> None:
    """Write the JSON to ``--save`` if given; print the JSON (``--json``) or the table."""
    if args.save:
        with open(args.save, "w") as f:
            json.dump(no_nan(report), f, indent=2)
    if args.json:
        print(json.dumps(no_nan(report), indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
