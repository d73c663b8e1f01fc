"""Credentials encrypted at rest with AES-256-GCM.

The key comes from ``TAJO_SECRET_KEY`` when it is set (a urlsafe-base64 32-byte key, or any
passphrase, stretched with scrypt and a per-vault salt), otherwise from a key file generated
on first use. Ciphertexts are ``version byte + 12-byte nonce + ciphertext-and-tag``; the
credential name (with the version) is the associated data, so a ciphertext stored under one
name cannot be replayed under another. The store (``state.py``) only ever sees ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import StateError

ENV_VAR = "TAJO_SECRET_KEY"
FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32
SALT_BYTES = 16
# scrypt cost from the OWASP password-storage guidance (N=2^17, r=8, p=1: 128 MiB, a fraction of
# a second); paid once per process, since the derived key is kept for the vault's lifetime.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1

_URLSAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{43}=?$")  # exactly 32 bytes in urlsafe base64

UNREADABLE = "stored credentials cannot be decrypted: TAJO_SECRET_KEY changed or the key file was replaced"
UNREADABLE_FIX = (
    "restore the previous TAJO_SECRET_KEY or key file, or run `tajo connectors install braze` again "
    "to store the credentials anew"
)


def encode_key(key: bytes) -> str:
    """The text form of a raw key, as written in key files and accepted in TAJO_SECRET_KEY."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes | None:
    """A 32-byte key from its urlsafe-base64 text form; None when ``text`` is not one."""
    text = text.strip()
    if not _URLSAFE_KEY.match(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def derive_key(passphrase: str, salt: bytes) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def _associated_data(name: str) -> bytes:
    return FORMAT_VERSION + name.encode("utf-8")


def _write_new_file(path: Path, content: bytes) -> bytes:
    """Create ``path`` (0600, parent 0700) holding ``content``, unless it exists; return what it holds.

    The content is written to a private temporary file and hard-linked into place, so two
    processes starting at once agree on one file and nobody ever reads a half-written one.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_bytes()
        return content
    finally:
        temporary.unlink(missing_ok=True)


def _read_private_file(path: Path) -> bytes:
    with_other_access = path.stat().st_mode & 0o077
    if with_other_access:
        # Tighten a file someone loosened; if it is not ours to chmod, refusing would only lock us out.
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
    return path.read_bytes()


class Vault:
    """Encrypts and decrypts named credentials. Never shows its key (not even in repr)."""

    def __init__(self, *, key_file: Path, env: Mapping[str, str] | None = None) -> None:
        self._key_file = Path(key_file)
        source = os.environ if env is None else env
        self._secret = source.get(ENV_VAR)
        if self._secret is not None and not self._secret.strip():
            raise StateError(
                f"{ENV_VAR} is set but empty",
                fix=f"unset it to use the key file {self._key_file}, or set it to a passphrase or a key",
            )
        self._aead: AESGCM | None = None
        self._ready = threading.Lock()

    def __repr__(self) -> str:
        return f"Vault(key_source={self.key_source!r})"

    @property
    def key_source(self) -> str:
        """Where the key comes from, for the install report: ``TAJO_SECRET_KEY`` or the key file path."""
        return ENV_VAR if self._secret is not None else str(self._key_file)

    @property
    def salt_file(self) -> Path:
        return Path(f"{self._key_file}.salt")

    def encrypt(self, name: str, plaintext: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._cipher(create=True).encrypt(nonce, plaintext.encode("utf-8"), _associated_data(name))
        return FORMAT_VERSION + nonce + sealed

    def decrypt(self, name: str, blob: bytes) -> str:
        # Every failure reads the same: the cause is a key mismatch or tampering, never the content.
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != FORMAT_VERSION:
            raise StateError(UNREADABLE, detail=f"credential {name!r}: unknown format", fix=UNREADABLE_FIX)
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            plain = self._cipher(create=False).decrypt(nonce, sealed, _associated_data(name))
        except InvalidTag:
            raise StateError(
                UNREADABLE, detail=f"credential {name!r}: authentication failed", fix=UNREADABLE_FIX
            ) from None
        return plain.decode("utf-8")

    # ------------------------------------------------------------ key material
    def _cipher(self, *, create: bool) -> AESGCM:
        with self._ready:
            if self._aead is None:
                self._aead = AESGCM(self._load_key(create=create))
            return self._aead

    def _load_key(self, *, create: bool) -> bytes:
        try:
            if self._secret is not None:
                raw = decode_key(self._secret)
                if raw is not None:
                    return raw
                return derive_key(self._secret, self._salt(create=create))
            return self._key_from_file(create=create)
        except OSError as exc:
            raise StateError(
                f"The key material at {self._key_file.parent} cannot be read or created: {exc.strerror}",
                fix="check that the directory is writable by this user",
            ) from None

    def _salt(self, *, create: bool) -> bytes:
        path = self.salt_file
        if path.exists():
            salt = _read_private_file(path)
        elif create:
            salt = _write_new_file(path, secrets.token_bytes(SALT_BYTES))
        else:
            raise StateError(UNREADABLE, detail=f"salt file {path} is missing", fix=UNREADABLE_FIX)
        if len(salt) != SALT_BYTES:
            raise StateError(
                f"The salt file {path} is damaged", fix="restore it, or delete it and install again"
            )
        return salt

    def _key_from_file(self, *, create: bool) -> bytes:
        path = self._key_file
        if path.exists():
            text = _read_private_file(path)
        elif create:
            text = _write_new_file(path, (encode_key(secrets.token_bytes(KEY_BYTES)) + "\n").encode("ascii"))
        else:
            raise StateError(UNREADABLE, detail=f"key file {path} is missing", fix=UNREADABLE_FIX)
        raw = decode_key(text.decode("ascii", errors="replace"))
        if raw is None:
            raise StateError(
                f"The key file {path} does not hold a valid key",
                fix="restore it from a backup, or delete it and run `tajo connectors install braze` again",
            )
        return raw
