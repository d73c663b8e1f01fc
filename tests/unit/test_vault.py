"""The credential vault: AES-256-GCM round trips, name binding, key sources and what never leaks."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tajo_braze import vault as vault_module
from tajo_braze.errors import StateError
from tajo_braze.state import StateStore
from tajo_braze.vault import ENV_VAR, Vault, decode_key, encode_key

SECRET = "brz-4f1c2a7e-0b9d-4c55-9f7e-SECRET-VALUE"
RAW_KEY = bytes(range(32))
ENV_KEY = base64.urlsafe_b64encode(RAW_KEY).decode("ascii")
OTHER_ENV_KEY = base64.urlsafe_b64encode(bytes(range(1, 33))).decode("ascii")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "tajo" / "secret.key"


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passphrase tests check behaviour, not cost: a small scrypt N keeps them fast."""
    monkeypatch.setattr(vault_module, "SCRYPT_N", 2**10)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_unreadable(error: StateError) -> None:
    assert "stored credentials cannot be decrypted" in error.user_message
    assert "TAJO_SECRET_KEY changed or the key file was replaced" in error.user_message
    for text in (str(error), error.user_message, error.detail, error.fix, repr(error)):
        assert SECRET not in text


# ---------------------------------------------------------------- round trip and format
def test_round_trip_with_a_fresh_nonce_each_time(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={})
    first = vault.encrypt("braze_api_key", SECRET)
    second = vault.encrypt("braze_api_key", SECRET)
    assert first != second
    assert first[:1] == b"\x01"
    assert len(first) == 1 + 12 + len(SECRET.encode()) + 16
    assert SECRET.encode() not in first
    assert vault.decrypt("braze_api_key", first) == SECRET
    assert vault.decrypt("braze_api_key", second) == SECRET


def test_non_ascii_plaintext_round_trips(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={})
    assert vault.decrypt("note", vault.encrypt("note", "clé-π-🔑")) == "clé-π-🔑"


def test_a_ciphertext_cannot_be_moved_to_another_name(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={})
    blob = vault.encrypt("braze_api_key", SECRET)
    with pytest.raises(StateError) as caught:
        vault.decrypt("brevo_api_key", blob)
    assert_unreadable(caught.value)


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_any_tampered_byte_is_detected(key_file: Path, position: int) -> None:
    vault = Vault(key_file=key_file, env={})
    blob = bytearray(vault.encrypt("braze_api_key", SECRET))
    blob[position] ^= 0x01
    with pytest.raises(StateError) as caught:
        vault.decrypt("braze_api_key", bytes(blob))
    assert_unreadable(caught.value)


def test_truncated_blob_is_refused(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={})
    with pytest.raises(StateError) as caught:
        vault.decrypt("braze_api_key", vault.encrypt("braze_api_key", SECRET)[:20])
    assert_unreadable(caught.value)


# ---------------------------------------------------------------- key file
def test_key_file_is_created_on_first_use_private_and_reused(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={})
    assert not key_file.exists()  # constructing a vault writes nothing
    assert vault.key_source == str(key_file)
    blob = vault.encrypt("braze_api_key", SECRET)
    assert mode_of(key_file) == 0o600
    assert mode_of(key_file.parent) == 0o700
    assert decode_key(key_file.read_text()) is not None
    assert Vault(key_file=key_file, env={}).decrypt("braze_api_key", blob) == SECRET
    assert [p.name for p in key_file.parent.iterdir()] == ["secret.key"]  # no temporary file left


def test_key_file_is_used_as_written(key_file: Path) -> None:
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(encode_key(RAW_KEY) + "\n")
    blob = Vault(key_file=key_file, env={}).encrypt("n", SECRET)
    assert AESGCM(RAW_KEY).decrypt(blob[1:13], blob[13:], b"\x01n") == SECRET.encode()


def test_a_loosened_key_file_is_tightened_on_read(key_file: Path) -> None:
    Vault(key_file=key_file, env={}).encrypt("n", SECRET)
    os.chmod(key_file, 0o644)
    Vault(key_file=key_file, env={}).encrypt("n", SECRET)
    assert mode_of(key_file) == 0o600


def test_replaced_key_file_makes_old_credentials_unreadable(key_file: Path) -> None:
    blob = Vault(key_file=key_file, env={}).encrypt("braze_api_key", SECRET)
    key_file.write_text(encode_key(os.urandom(32)))
    with pytest.raises(StateError) as caught:
        Vault(key_file=key_file, env={}).decrypt("braze_api_key", blob)
    assert_unreadable(caught.value)


def test_decrypting_without_a_key_file_fails_and_creates_none(key_file: Path, tmp_path: Path) -> None:
    blob = Vault(key_file=tmp_path / "elsewhere.key", env={}).encrypt("braze_api_key", SECRET)
    with pytest.raises(StateError) as caught:
        Vault(key_file=key_file, env={}).decrypt("braze_api_key", blob)
    assert_unreadable(caught.value)
    assert not key_file.exists()


def test_a_key_file_without_a_valid_key_is_reported(key_file: Path) -> None:
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text("not a key")
    with pytest.raises(StateError, match="does not hold a valid key"):
        Vault(key_file=key_file, env={}).encrypt("n", SECRET)


# ---------------------------------------------------------------- TAJO_SECRET_KEY
def test_env_key_takes_precedence_and_is_used_as_the_raw_key(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={ENV_VAR: ENV_KEY})
    assert vault.key_source == "TAJO_SECRET_KEY"
    blob = vault.encrypt("braze_api_key", SECRET)
    assert not key_file.exists()
    assert AESGCM(RAW_KEY).decrypt(blob[1:13], blob[13:], b"\x01braze_api_key") == SECRET.encode()
    with pytest.raises(StateError) as caught:  # the key file vault holds another key
        Vault(key_file=key_file, env={}).decrypt("braze_api_key", blob)
    assert_unreadable(caught.value)


def test_changed_env_key_makes_old_credentials_unreadable(key_file: Path) -> None:
    blob = Vault(key_file=key_file, env={ENV_VAR: ENV_KEY}).encrypt("braze_api_key", SECRET)
    with pytest.raises(StateError) as caught:
        Vault(key_file=key_file, env={ENV_VAR: OTHER_ENV_KEY}).decrypt("braze_api_key", blob)
    assert_unreadable(caught.value)


def test_env_is_read_from_the_process_environment_by_default(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, ENV_KEY)
    assert Vault(key_file=key_file).key_source == "TAJO_SECRET_KEY"
    monkeypatch.delenv(ENV_VAR)
    assert Vault(key_file=key_file).key_source == str(key_file)


def test_an_empty_env_key_is_refused_rather_than_used(key_file: Path) -> None:
    with pytest.raises(StateError, match="set but empty"):
        Vault(key_file=key_file, env={ENV_VAR: "  "})


@pytest.mark.usefixtures("cheap_scrypt")
def test_passphrase_is_stretched_with_a_private_per_vault_salt(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={ENV_VAR: "correct horse battery staple"})
    blob = vault.encrypt("braze_api_key", SECRET)
    salt_file = Path(f"{key_file}.salt")
    assert mode_of(salt_file) == 0o600
    assert len(salt_file.read_bytes()) == 16
    assert not key_file.exists()
    again = Vault(key_file=key_file, env={ENV_VAR: "correct horse battery staple"})
    assert again.decrypt("braze_api_key", blob) == SECRET
    with pytest.raises(StateError) as caught:
        Vault(key_file=key_file, env={ENV_VAR: "correct horse battery stapler"}).decrypt(
            "braze_api_key", blob
        )
    assert_unreadable(caught.value)


@pytest.mark.usefixtures("cheap_scrypt")
def test_same_passphrase_with_another_salt_gives_another_key(tmp_path: Path) -> None:
    env = {ENV_VAR: "one passphrase"}
    blob = Vault(key_file=tmp_path / "a" / "secret.key", env=env).encrypt("n", SECRET)
    other = Vault(key_file=tmp_path / "b" / "secret.key", env=env)
    other.encrypt("n", "warm up: creates b's salt")
    with pytest.raises(StateError) as caught:
        other.decrypt("n", blob)
    assert_unreadable(caught.value)


@pytest.mark.usefixtures("cheap_scrypt")
def test_lost_salt_file_is_reported_as_unreadable(key_file: Path) -> None:
    env = {ENV_VAR: "one passphrase"}
    blob = Vault(key_file=key_file, env=env).encrypt("n", SECRET)
    Path(f"{key_file}.salt").unlink()
    with pytest.raises(StateError) as caught:
        Vault(key_file=key_file, env=env).decrypt("n", blob)
    assert_unreadable(caught.value)


def test_default_scrypt_cost_round_trips(key_file: Path) -> None:
    env = {ENV_VAR: "a real-cost passphrase"}
    blob = Vault(key_file=key_file, env=env).encrypt("n", SECRET)
    assert Vault(key_file=key_file, env=env).decrypt("n", blob) == SECRET


def test_decode_key_accepts_only_32_byte_urlsafe_keys() -> None:
    assert decode_key(ENV_KEY) == RAW_KEY
    assert decode_key(ENV_KEY.rstrip("=")) == RAW_KEY
    assert decode_key(f"  {ENV_KEY}\n") == RAW_KEY
    assert decode_key(base64.urlsafe_b64encode(bytes(31)).decode()) is None
    assert decode_key(base64.b64encode(bytes([0xFB]) * 32).decode()) is None  # '+' and '/' are not urlsafe
    assert decode_key("correct horse battery staple") is None


# ---------------------------------------------------------------- nothing leaks
def test_repr_shows_the_key_source_never_the_key(key_file: Path) -> None:
    vault = Vault(key_file=key_file, env={ENV_VAR: ENV_KEY})
    vault.encrypt("n", SECRET)
    assert repr(vault) == "Vault(key_source='TAJO_SECRET_KEY')"
    assert ENV_KEY not in repr(vault) and ENV_KEY.rstrip("=") not in repr(vault)


def test_no_plaintext_in_the_state_files_after_storing_an_encrypted_credential(tmp_path: Path) -> None:
    state_path = tmp_path / "tajo" / "state.db"
    vault = Vault(key_file=tmp_path / "tajo" / "secret.key", env={})
    with StateStore(state_path) as store:
        store.put_credential("braze_api_key", vault.encrypt("braze_api_key", SECRET))
        on_disk_while_open = b"".join(path.read_bytes() for path in state_path.parent.glob("state.db*"))
    on_disk_after_close = b"".join(path.read_bytes() for path in state_path.parent.glob("state.db*"))
    for dump in (on_disk_while_open, on_disk_after_close):
        assert SECRET.encode() not in dump
        assert SECRET.encode("utf-16-le") not in dump
    with StateStore(state_path) as store:
        blob = store.get_credential("braze_api_key")
    assert blob is not None
    assert Vault(key_file=tmp_path / "tajo" / "secret.key", env={}).decrypt("braze_api_key", blob) == SECRET
