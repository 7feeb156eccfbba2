"""Cheap "is that service there?" checks, used to choose between a configured/local service and an embedded one.

Concurrency contract: synchronous; each blocks the calling thread for at most
about ``timeout`` seconds and never raises for an unreachable service. From
trio call them via ``trio.to_thread.run_sync``.
"""
from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading


def probe_postgres(dsn: str, timeout: float = 2.0) -> bool:
    """True if PostgreSQL at ``dsn`` accepts a connection and answers ``SELECT 1`` within ``timeout``."""
    import asyncpg

    async def check() -> bool:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            return await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    answer = [False]

    def run() -> None:
        try:
            answer[0] = asyncio.run(asyncio.wait_for(check(), timeout))
        except Exception:  # refused, timed out, auth failed, no such database...
            pass

    # A thread of its own: asyncio.run() refuses to run inside a thread that
    # already has a running loop (e.g. under trio-asyncio).
    thread = threading.Thread(target=run, name="probe_postgres", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return answer[0]


def probe_mqtt(
    host: str,
    port: int,
    timeout: float = 2.0,
    *,
    username: str | None = None,
    password: str | None = None,
) -> bool:
    """True if an MQTT broker at host:port accepts an MQTT 3.1.1 CONNECT within ``timeout``.

    A full handshake rather than a bare TCP connect, so some other service on
    the port does not count, and a broker that would refuse us (bad or missing
    credentials) answers False. Leaves nothing behind: clean session, then
    DISCONNECT.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_connect_packet(username, password))
            connack = _recv_exactly(sock, 4)
            accepted = connack[0] == 0x20 and connack[1] == 0x02 and connack[3] == 0x00
            if accepted:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return accepted
    except OSError:  # refused, reset, timed out
        return False


def _connect_packet(username: str | None, password: str | None) -> bytes:
    def string(value: str) -> bytes:
        data = value.encode()
        return struct.pack("!H", len(data)) + data

    flags = 0x02  # clean session
    payload = string(f"campushub-probe-{os.urandom(6).hex()}")
    if username is not None:
        flags |= 0x80
        payload += string(username)
        if password is not None:
            flags |= 0x40
            payload += string(password)
    # Protocol name, level 4 (3.1.1), flags, keep-alive 10 s.
    body = string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed before CONNACK")
        data += chunk
    return data
