"""Receive+ack throughput of hub.mqtt.TrioMqttClient against a real broker.

A separate *process* (so it does not compete for our GIL) publishes N QoS 1
messages with plain paho; this process receives them through TrioMqttClient
and acks each one (consuming in batches, see next_batch()). It is a
benchmark: no assertions. Two figures:

* stream: publisher and receiver run concurrently; msgs/s from the first to
  the last message received. End-to-end, so it is bounded by the slowest of
  publisher, broker and receiver (on a small box they share the CPUs).
* burst: the publisher gets --window messages into the broker (all PUBACKed)
  while the receiver does not consume (so backpressure holds them in the
  broker and the socket), then the receiver drains them; repeated until N.
  msgs/s over the drain phases only: what the receive+ack path can do when
  messages are waiting, i.e. with full drain batches.

    .venv/bin/python bench/mqtt_receive.py [-n 50000] [--mode both|stream|burst] [--tls off|on|both]

``--tls on|both`` starts a private Mosquitto (anonymous, one plain and one TLS
listener, certificates from trustme) for the run: the publisher always uses the
plain listener, the receiver the TLS one (``on``), or first the plain one and
then the TLS one in the same sitting (``both``, with the TLS/plain ratios): the
cost of TLS on the hub's drain loop, decrypted-bytes handling included.

Mosquitto keeps at most ``max_queued_messages`` (default 1000) messages per
subscriber beyond those in flight (our ReceiveMaximum, 1000) and silently
drops the rest, so the publisher never runs more than --window messages ahead
of what the receiver reports (over the publisher's stdin) as received.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid

PAYLOAD = b"x" * 64
#: Put on sys.path by the receiver, which imports the hub's MQTT client.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def publisher_main(host: str, port: int, topic: str, n: int, window: int, burst: bool) -> None:
    import paho.mqtt.client as mqtt

    received = 0

    def read_progress() -> None:
        nonlocal received
        for line in sys.stdin:
            received = int(line)

    threading.Thread(target=read_progress, daemon=True).start()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5)
    # External-loop paho in one thread: loop_start() costs ~2x the CPU, and
    # on a small machine the publisher's CPU is taken from the receiver.
    c.max_inflight_messages_set(50)
    c.max_queued_messages_set(1000)
    acked = 0

    def on_publish(client, userdata, mid, rc, props) -> None:
        nonlocal acked
        acked += 1

    c.on_publish = on_publish
    c.connect(host, port, keepalive=30)
    while not c.is_connected():
        c.loop(0.1)
    print("ready", flush=True)
    i = burst_end = 0
    while acked < n:
        if burst:
            if i == burst_end and received >= i:  # previous burst drained
                burst_end = min(i + window, n)
            limit = burst_end
        else:
            limit = min(n, received + window)
        while i < limit:
            if c.publish(topic, PAYLOAD, qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            i += 1
        c.loop(0.001)  # select + loop_read/loop_write + keepalive
        if burst and acked == i == burst_end and received < i:
            print(f"burst {i}", flush=True)  # all of it is at the broker now
            while received < i:
                c.loop(0.001)
    c.disconnect()
    c.loop(0.1)


async def receiver_main(host: str, port: int, n: int, window: int, burst: bool,
                        rx_port: int | None = None, cafile: str | None = None) -> tuple[float, float]:
    import trio

    sys.path.insert(0, PROJECT_ROOT)
    from hub.mqtt import TrioMqttClient, client_tls_context

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}/data"
    # burst: a small channel so that most messages are read from the socket
    # during the timed drain, not parked in the channel before it starts.
    client = TrioMqttClient(host=host, port=rx_port or port, client_id=f"{prefix}-rx", clean_start=True,
                            session_expiry_s=60, inbound_capacity=64 if burst else 1024,
                            receive_maximum=1000, tls=client_tls_context(cafile) if cafile else None)

    async def on_connect(c: TrioMqttClient) -> None:
        await c.subscribe(f"{prefix}/#", qos=1)

    # Popen only forks and execs (it does not wait): harmless before the timed part starts.
    pub = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, __file__, "--publisher", "--host", host, "--port", str(port),
         "--topic", topic, "-n", str(n), "--window", str(window)] + (["--burst"] if burst else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    assert pub.stdout is not None and pub.stdin is not None

    def report(count: int) -> None:
        try:
            pub.stdin.write(f"{count}\n")
            pub.stdin.flush()
        except BrokenPipeError:
            pass  # publisher got all its PUBACKs and exited

    rx = client.messages

    async def next_batch() -> list:
        # One await, then whatever else is already buffered: each await on a
        # trio channel is a scheduler tick (an epoll_wait), which at these
        # rates costs more than the message itself. The hub's ingress
        # consumes the same way.
        batch = [await rx.receive()]
        while True:
            try:
                batch.append(rx.receive_nowait())
            except trio.WouldBlock:
                return batch

    count = 0
    elapsed = cpu = 0.0
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: client.run(on_connect=on_connect,
                                                                 task_status=task_status))
            line = await trio.to_thread.run_sync(pub.stdout.readline)
            if line.strip() != "ready":
                raise SystemExit(f"publisher failed: {line!r}")
            with trio.move_on_after(180) as timeout:
                if burst:
                    while count < n:
                        line = await trio.to_thread.run_sync(pub.stdout.readline)
                        target = int(line.split()[1])
                        t0, c0 = time.perf_counter(), time.process_time()
                        while count < target:
                            for msg in await next_batch():
                                client.ack(msg)
                                count += 1
                        elapsed += time.perf_counter() - t0
                        cpu += time.process_time() - c0
                        report(count)
                else:
                    last_report = 0
                    while count < n:
                        batch = await next_batch()
                        if count == 0:
                            t0, c0 = time.perf_counter(), time.process_time()
                        for msg in batch:
                            client.ack(msg)
                        count += len(batch)
                        if count - last_report >= window // 4:
                            last_report = count
                            report(count)
                    elapsed = time.perf_counter() - t0
                    cpu = time.process_time() - c0
            if timeout.cancelled_caught:
                print(f"timed out: received {count}/{n}")
            nursery.cancel_scope.cancel()
    finally:
        try:
            pub.stdin.close()
        except BrokenPipeError:
            pass
        pub.wait(30)

    mode = ("burst" if burst else "stream") + (" tls" if cafile else "")
    print(f"[{mode}] received+acked {count}/{n} QoS1 messages ({len(PAYLOAD)} B payload) "
          f"in {elapsed:.3f}s: {count / elapsed:,.0f} msg/s "
          f"(receiver CPU {cpu:.2f}s = {count / cpu:,.0f} msg per CPU-second, "
          f"{cpu / count * 1e6:.1f} µs CPU per message)")
    print(f"[{mode}] client stats: {client.stats}")
    return count / elapsed, cpu / count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50_000)
    ap.add_argument("--host", default=os.environ.get("CAMPUSHUB_TEST_MQTT_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("CAMPUSHUB_TEST_MQTT_PORT", "1883")))
    ap.add_argument("--window", type=int, default=1500,
                    help="max messages the publisher may run ahead of the receiver")
    ap.add_argument("--mode", choices=["both", "stream", "burst"], default="both")
    ap.add_argument("--tls", choices=["off", "on", "both"], default="off",
                    help="receiver over TLS to a private Mosquitto (both: plain, then TLS, same broker)")
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--burst", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        publisher_main(args.host, args.port, args.topic, args.n, args.window, args.burst)
        return
    import trio

    print(f"{os.cpu_count()} CPUs shared by publisher, broker and receiver; "
          f"load average {os.getloadavg()[0]:.2f}")
    modes = ["stream", "burst"] if args.mode == "both" else [args.mode]
    if args.tls == "off":
        for mode in modes:
            trio.run(receiver_main, args.host, args.port, args.n, args.window, mode == "burst")
        return
    import tempfile

    from _common import start_tls_broker  # bench/ is sys.path[0]: this file is run as a script

    with tempfile.TemporaryDirectory(prefix="bench-tls-") as directory:
        broker, plain_port, tls_port, cafile = start_tls_broker(directory)
        try:
            for mode in modes:
                runs = {}
                for tls in ([False, True] if args.tls == "both" else [True]):
                    runs[tls] = trio.run(receiver_main, "127.0.0.1", plain_port, args.n, args.window,
                                         mode == "burst", tls_port if tls else None, cafile if tls else None)
                if len(runs) == 2:
                    (rate, cpu), (tls_rate, tls_cpu) = runs[False], runs[True]
                    print(f"[{mode}] TLS/plain: {tls_rate / rate:.2f}x msg/s, {tls_cpu / cpu:.2f}x CPU per message")
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
