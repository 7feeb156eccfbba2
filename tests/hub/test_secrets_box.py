"""hub/core/secrets_box.py: the campus key. AES-256-GCM sealing, context binding, key ids for rotation,
the 0600 key file that running hubs follow, documents, derived keys, the one name for the key."""
from __future__ import annotations

import base64
import os
import stat

import pytest

from hub.core.config import Settings
from hub.core.secrets_box import (
    KEY_ENV,
    MAX_DOCUMENT_BYTES,
    SecretsBox,
    SecretsBoxError,
    add_key,
    create_key_file,
    load_campus_key,
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
    path = tmp_path / "data" / "campus.key"
    box = load_secrets_box(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = box.encrypt(b"seed", b"c")
    assert load_secrets_box(path).decrypt(blob, b"c") == b"seed"  # same key after a restart
    with pytest.raises(FileExistsError):
        create_key_file(path)  # never overwritten


def test_key_from_the_environment_wins(tmp_path):
    assert KEY_ENV == "CAMPUSHUB_MASTER_KEY"
    assert Settings.from_env({KEY_ENV: "abc"}).master_key == "abc"
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
], ids=["empty", "not-base64", "short", "id-0", "repeated-id"])  # stable ids: the keys are random
def test_malformed_key_files_are_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_key_file(text)


def test_bad_environment_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match=KEY_ENV):
        load_secrets_box(tmp_path / "k", base64.b64encode(b"too short").decode())


def test_oversized_secret_is_refused():
    with pytest.raises(ValueError, match="at most"):
        SecretsBox.ephemeral().encrypt(b"x" * (64 * 1024 + 1), b"c")


def test_the_campus_key_file_lives_in_the_data_dir_unless_moved(tmp_path):
    settings = Settings.from_env({"CAMPUSHUB_DATA_DIR": str(tmp_path / "d")})
    assert settings.master_key_path == tmp_path / "d" / "campus.key"
    box = load_campus_key(settings)
    assert settings.master_key_path.is_file() and box.key_ids == (1,)
    moved = Settings.from_env({"CAMPUSHUB_MASTER_KEY_FILE": str(tmp_path / "elsewhere.key")})
    assert moved.master_key_path == tmp_path / "elsewhere.key"


@pytest.mark.parametrize("old_name", ["CAMPUSHUB_SECRETS_KEY", "CAMPUSHUB_SECRETS_KEY_FILE"])
def test_the_old_key_names_are_refused_with_the_new_one(old_name):
    with pytest.raises(ValueError, match=old_name.replace("SECRETS", "MASTER")):
        Settings.from_env({old_name: base64.b64encode(os.urandom(32)).decode()})


def test_a_leftover_secrets_key_file_is_not_silently_replaced(tmp_path):
    create_key_file(tmp_path / "secrets.key")  # the key file's name before it sealed every secret
    with pytest.raises(ValueError, match="rename it"):
        load_secrets_box(tmp_path / "campus.key")
    assert not (tmp_path / "campus.key").exists()


def test_environment_key_may_list_several_ids_for_a_rotation():
    one, two = os.urandom(32), os.urandom(32)
    value = f"1 {base64.b64encode(one).decode()}; 2 {base64.b64encode(two).decode()}"
    box = load_secrets_box(Settings().master_key_path, value)
    assert box.key_ids == (1, 2) and box.current_key_id == 2
    assert box.decrypt(SecretsBox({1: one}).encrypt(b"s", b"c"), b"c") == b"s"


def test_documents_larger_than_a_secret_seal_and_open():
    box = SecretsBox.ephemeral()
    document = os.urandom(5 * 1024 * 1024)
    blob = box.encrypt_document(document, b"leave-document:7")
    assert len(blob) == len(document) + 30  # version, key id, nonce, tag: the size the migration checks
    assert box.decrypt_document(blob, b"leave-document:7") == document
    with pytest.raises(SecretsBoxError):
        box.decrypt_document(blob, b"leave-document:8")
    with pytest.raises(ValueError, match="at most"):
        box.encrypt_document(b"x" * (MAX_DOCUMENT_BYTES + 1), b"c")


def test_derived_keys_depend_on_purpose_salt_and_key_id_and_can_be_derived_again():
    one, two = os.urandom(32), os.urandom(32)
    box = SecretsBox({1: one, 2: two})
    key_id, key = box.derive_key(b"backup", salt=b"s" * 16)
    assert key_id == 2 and len(key) == 32 and key not in (one, two)
    assert SecretsBox({2: two}).derive_key(b"backup", key_id=2, salt=b"s" * 16) == (2, key)  # a restore
    assert box.derive_key(b"backup", key_id=1, salt=b"s" * 16)[1] != key
    assert box.derive_key(b"other", salt=b"s" * 16)[1] != key
    assert box.derive_key(b"backup", salt=b"t" * 16)[1] != key
    with pytest.raises(SecretsBoxError, match="key 3"):
        box.derive_key(b"backup", key_id=3)


def test_add_key_appends_the_next_id_and_keeps_the_file_private(tmp_path):
    path = tmp_path / "campus.key"
    create_key_file(path)
    first = parse_key_file(path.read_text())
    assert add_key(path) == 2
    keys = parse_key_file(path.read_text())
    assert keys[1] == first[1] and len(keys[2]) == 32 and keys[2] != keys[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["campus.key"]  # no temporary file left


def test_a_running_box_follows_its_key_file_when_a_rotation_adds_a_key(tmp_path):
    path = tmp_path / "campus.key"
    running = load_secrets_box(path)  # a hub started before the rotation
    old_blob = running.encrypt(b"old", b"c")
    add_key(path)
    rotated = load_secrets_box(path)  # `campushub keys rotate`
    new_blob = rotated.encrypt(b"new", b"c")
    assert new_blob[1] == 2
    assert running.decrypt(new_blob, b"c") == b"new"  # opens what the rotation re-sealed, no restart
    assert running.encrypt(b"later", b"c")[1] == 2     # and seals new secrets with the new key
    assert running.decrypt(old_blob, b"c") == b"old"


def test_a_running_box_derives_with_the_key_a_rotation_added(tmp_path):
    # Display codes and backups derive from the current key: a running hub uses the new one at once.
    path = tmp_path / "campus.key"
    running = load_secrets_box(path)
    assert running.derive_key(b"display-code", salt=b"s1")[0] == 1
    add_key(path)
    key_id, key = running.derive_key(b"display-code", salt=b"s1")
    assert key_id == 2 and key == load_secrets_box(path).derive_key(b"display-code", key_id=2, salt=b"s1")[1]


def test_a_key_file_broken_while_running_keeps_the_keys_in_use(tmp_path):
    path = tmp_path / "campus.key"
    running = load_secrets_box(path)
    blob = running.encrypt(b"s", b"c")
    path.write_text("garbage\n")
    assert running.decrypt(blob, b"c") == b"s"
    assert running.encrypt(b"t", b"c")[1] == 1
