"""Who is who on this agent's terminals: PIN → student and page → student, and templates.

The hub fills it with ``roster_sync`` / ``template_sync`` commands. Everything
here is personal data, so it is kept only sealed: AES-256-GCM, one random
96-bit nonce per record, the record's name and key id as associated data (a
record cannot be swapped for another). Keys live in a separate JSON key
store file (mode 0600) so a copy of the state file alone reveals nothing.

Key rotation (:meth:`Enrolment.rotate_key`): a new key is added to the store,
every record is re-sealed under it in one SQLite transaction, then the old
keys are removed from the store. A crash in between leaves both keys in the
store, and every record readable.

Concurrency: used from the event loop thread only; the SQLite writes are
short and synchronous (a few records).
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .state import AgentState

_PINS = "roster.pins"
_PAGES = "roster.pages"
_TEMPLATE = "template."


class KeyStoreError(Exception):
    """The key store is unreadable, or a sealed record needs a key it lacks."""


class KeyRing:
    """``{"current": kid, "keys": {kid: hex}}`` in a 0600 file, created on first use."""

    def __init__(self, path: "str | Path") -> None:
        self.path = Path(path)
        self.current = ""
        self.keys: dict[str, bytes] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.keys = {k: bytes.fromhex(v) for k, v in data["keys"].items()}
                self.current = data["current"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise KeyStoreError(f"{self.path}: unreadable key store ({exc})") from exc
            if self.current not in self.keys or any(len(k) != 32 for k in self.keys.values()):
                raise KeyStoreError(f"{self.path}: current key missing or not 256-bit")

    def ensure(self) -> None:
        if not self.current:
            self.add_key()

    def add_key(self) -> str:
        kid = secrets.token_hex(4)
        self.keys[kid] = AESGCM.generate_key(bit_length=256)
        self.current = kid
        self._save()
        return kid

    def drop_all_but_current(self) -> None:
        self.keys = {self.current: self.keys[self.current]}
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"current": self.current, "keys": {k: v.hex() for k, v in self.keys.items()}})
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def seal(self, name: str, plaintext: bytes) -> tuple[str, str, bytes, bytes]:
        self.ensure()
        nonce = os.urandom(12)
        data = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, f"{name}|{self.current}".encode())
        return name, self.current, nonce, data

    def open(self, name: str, kid: str, nonce: bytes, data: bytes) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            raise KeyStoreError(f"record {name!r} needs key {kid!r}, which the key store lacks")
        try:
            return AESGCM(key).decrypt(nonce, data, f"{name}|{kid}".encode())
        except Exception as exc:  # InvalidTag: tampered or wrong key
            raise KeyStoreError(f"record {name!r} fails authentication") from exc


class Enrolment:
    """The decrypted maps in memory; every change is sealed and written before it is visible."""

    def __init__(self, state: AgentState, key_store: "str | Path") -> None:
        self._state = state
        self.ring = KeyRing(key_store)
        self.pins: dict[str, str] = {}
        self.pages: dict[int, str] = {}
        self.template_pages: set[int] = set()
        for name, kid, nonce, data in state.sealed_rows():
            if name == _PINS:
                self.pins = json.loads(self.ring.open(name, kid, nonce, data))
            elif name == _PAGES:
                self.pages = {int(k): v for k, v in json.loads(self.ring.open(name, kid, nonce, data)).items()}
            elif name.startswith(_TEMPLATE):
                self.template_pages.add(int(name[len(_TEMPLATE):]))

    def student_for_pin(self, pin: str) -> str | None:
        return self.pins.get(pin)

    def student_for_page(self, page: int) -> str | None:
        return self.pages.get(page)

    def update_roster(self, *, pins: Mapping[str, str] | None = None, pages: Mapping[int, str] | None = None,
                      remove_pins: tuple[str, ...] = (), remove_pages: tuple[int, ...] = (),
                      replace: bool = False) -> None:
        new_pins = {} if replace and pins is not None else dict(self.pins)
        new_pages = {} if replace and pages is not None else dict(self.pages)
        new_pins.update(pins or {})
        new_pages.update(pages or {})
        for pin in remove_pins:
            new_pins.pop(pin, None)
        for page in remove_pages:
            new_pages.pop(page, None)
        self._state.put_sealed([
            self.ring.seal(_PINS, json.dumps(new_pins, sort_keys=True).encode()),
            self.ring.seal(_PAGES, json.dumps({str(k): v for k, v in new_pages.items()}, sort_keys=True).encode()),
        ])
        self.pins, self.pages = new_pins, new_pages

    def put_template(self, page: int, student: str, template: bytes) -> None:
        pages = dict(self.pages)
        pages[page] = student
        self._state.put_sealed([
            self.ring.seal(f"{_TEMPLATE}{page}", template),
            self.ring.seal(_PAGES, json.dumps({str(k): v for k, v in pages.items()}, sort_keys=True).encode()),
        ])
        self.pages = pages
        self.template_pages.add(page)

    def delete_template(self, page: int) -> None:
        pages = {k: v for k, v in self.pages.items() if k != page}
        self._state.put_sealed(
            [self.ring.seal(_PAGES, json.dumps({str(k): v for k, v in pages.items()}, sort_keys=True).encode())],
            delete=[f"{_TEMPLATE}{page}"])
        self.pages = pages
        self.template_pages.discard(page)

    def template(self, page: int) -> bytes | None:
        for name, kid, nonce, data in self._state.sealed_rows():
            if name == f"{_TEMPLATE}{page}":
                return self.ring.open(name, kid, nonce, data)
        return None

    def rotate_key(self) -> str:
        """Re-seal every record under a fresh key; returns the new key id."""
        rows = [(name, self.ring.open(name, kid, nonce, data)) for name, kid, nonce, data in self._state.sealed_rows()]
        kid = self.ring.add_key()  # old keys stay in the file until the records are re-sealed
        self._state.put_sealed([self.ring.seal(name, plain) for name, plain in rows])
        self.ring.drop_all_but_current()
        return kid
