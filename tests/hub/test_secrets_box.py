"""hub/core/secrets_box.py: AES-256-GCM sealing, context binding, key ids for rotation, the 0600 key file."""
from __future__ import annotations

import base64
import os
import stat

import pytest

from hub.core.config import Settings
from hub.core.secrets_box import (
    KEY_ENV,
    SecretsBox,
    SecretsBoxError,
    create_key_file,
    load_secrets_box,
    parse_key_file,
)


def test_sealed_secret_opens_only_for_its_context():
    box = SecretsBox.ephemeral()
    blob = box.encrypt(b"seed bytes", b"totp:usr-1")
    assert b"seed bytes" not in blob
    assert box.decrypt(blob, b"totp:usr-1") == b"seed bytes"
    with pytest.raises(SecretsBoxError):
        box.decrypt(blob, b"totp:usr-2")  # copied onto another user's row


def test_two_seals_of_one_secret_differ():
    box = SecretsBox.ephemeral()
    assert box.encrypt(b"x", b"c") != box.encrypt(b"x", b"c")  # a fresh nonce each time


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1] + bytes([b[-1] ^ 1]),          # tag
    lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:],  # ciphertext
    lambda b: bytes([2]) + b[1:],                    # version
    lambda b: b[:10],                                # truncated
    lambda b: b"",
])
def test_tampered_blobs_are_refused(damage):
    box = SecretsBox.ephemeral()
    with pytest.raises(SecretsBoxError):
        box.decrypt(damage(box.encrypt(b"seed", b"c")), b"c")


def test_rotation_new_key_seals_old_keys_still_open():
    old_key, new_key = os.urandom(32), os.urandom(32)
    old_box = SecretsBox({1: old_key})
    old_blob = old_box.encrypt(b"old", b"c")
    rotated = SecretsBox({1: old_key, 2: new_key})
    assert rotated.decrypt(old_blob, b"c") == b"old"
    assert rotated.needs_rekey(old_blob)
    new_blob = rotated.encrypt(b"new", b"c")
    assert new_blob[1] == 2 and not rotated.needs_rekey(new_blob)
    with pytest.raises(SecretsBoxError, match="key 2"):
        old_box.decrypt(new_blob, b"c")  # a hub without the new key says which key is missing


def test_key_file_is_created_0600_and_reused(tmp_path):
    path = tmp_path / "data" / "secrets.key"
    box = load_secrets_box(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = box.encrypt(b"seed", b"c")
    assert load_secrets_box(path).decrypt(blob, b"c") == b"seed"  # same key after a restart
    with pytest.raises(FileExistsError):
        create_key_file(path)  # never overwritten


def test_key_from_the_environment_wins(tmp_path):
    assert Settings.from_env({KEY_ENV: "abc"}).secrets_key == "abc"
    assert "abc" not in repr(Settings.from_env({KEY_ENV: "abc"}))
    key = os.urandom(32)
    box = load_secrets_box(tmp_path / "unused.key", base64.b64encode(key).decode())
    assert not (tmp_path / "unused.key").exists()
    assert SecretsBox({1: key}).decrypt(box.encrypt(b"s", b"c"), b"c") == b"s"


@pytest.mark.parametrize("text, reason", [
    ("", "no key"),
    ("1 notbase64!!\n", "not base64"),
    (f"1 {base64.b64encode(b'short').decode()}\n", "32 bytes"),
    (f"0 {base64.b64encode(os.urandom(32)).decode()}\n", "1..255"),
    ("1 {k}\n1 {k}\n".format(k=base64.b64encode(os.urandom(32)).decode()), "new id"),
])
def test_malformed_key_files_are_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_key_file(text)


def test_bad_environment_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match=KEY_ENV):
        load_secrets_box(tmp_path / "k", base64.b64encode(b"too short").decode())


def test_oversized_secret_is_refused():
    with pytest.raises(ValueError, match="at most"):
        SecretsBox.ephemeral().encrypt(b"x" * (64 * 1024 + 1), b"c")
