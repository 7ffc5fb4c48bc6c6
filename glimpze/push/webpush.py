"""Web Push (RFC 8030/8291/8292): the server's VAPID key pair, browser subscriptions, sending.

The key pair is made on first use (the first request for the public key, or push) in the data
dir: `vapid_private.pem` (PKCS#8, mode 0600) and `vapid_public.txt` (the uncompressed P-256
point, base64url: what browsers take as `applicationServerKey`, served at
`GET /v1/push/vapid-public-key`). Starts read the public key as text, so a server that never
pushes imports no cryptography.

A push is the JSON `{title, body, url, actions}` encrypted by pywebpush (aes128gcm), with a VAPID
`Authorization` header signed by py_vapid, POSTed to the subscription's endpoint through the
SSRF-guarded client: the endpoint comes from a browser and is untrusted (a redirect is not
followed: a 3xx is a failed push). pywebpush and py_vapid
are imported on the first push; encryption and signing run in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from glimpze.errors import ValidationFailed

PRIVATE_KEY_FILE = "vapid_private.pem"
PUBLIC_KEY_FILE = "vapid_public.txt"
FALLBACK_SUBJECT = "mailto:glimpze@localhost"
VAPID_LIFETIME = 12 * 3600
MAX_ENDPOINT_CHARS = 2048
RESPONSE_HEAD_BYTES = 200


@dataclass(frozen=True, slots=True)
class Subscription:
    """A browser's PushSubscription: where to send, and its keys (base64url)."""

    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True, slots=True)
class Sent:
    """One push's result: `gone` when the push service says the subscription no longer exists."""

    ok: bool
    error: str | None = None
    gone: bool = False


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def check_subscription(endpoint: str, p256dh: str, auth: str) -> Subscription:
    """A subscription as the browser gave it, checked; raises ValidationFailed naming the field."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise ValidationFailed.at("$.endpoint", "must be the push service's absolute https:// URL")
    if parts.username or parts.password:
        raise ValidationFailed.at("$.endpoint", "must not carry credentials")
    try:
        key = b64url_decode(p256dh)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 65 or key[0] != 4:
        raise ValidationFailed.at("$.keys.p256dh", "must be the browser's P-256 public key (65 bytes, base64url)")
    try:
        secret = b64url_decode(auth)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != 16:
        raise ValidationFailed.at("$.keys.auth", "must be the browser's 16-byte auth secret (base64url)")
    return Subscription(endpoint, p256dh, auth)


def ensure_keys(data_path: Path) -> str:
    """The VAPID public key, making the key pair first if the data dir has none; returns base64url."""
    private, public = data_path / PRIVATE_KEY_FILE, data_path / PUBLIC_KEY_FILE
    if private.exists() and public.exists():
        return public.read_text().strip()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if private.exists():  # the public half was lost: derive it again
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
    else:
        data_path.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if not _write_private(private, pem, replace=False):
            # Another process on the same data dir (several behind one PostgreSQL) made its pair
            # first: use that one, or its subscribers and ours would be signed for different keys.
            key = serialization.load_pem_private_key(private.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    _write_private(public, (b64url(point) + "\n").encode())
    return b64url(point)


async def _read_head(response: httpx.Response) -> str:
    """The first bytes of an answer (an untrusted server's: never the whole of it)."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= RESPONSE_HEAD_BYTES:
            break
    return head[:RESPONSE_HEAD_BYTES].decode("utf-8", "replace")


def _write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write a file readable by its owner only, atomically; with `replace=False`, only if there is
    none yet (returns False when there was)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: the first writer wins
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


class WebPush:
    """Sends encrypted pushes to subscriptions through the guarded transport."""

    def __init__(
        self,
        data_path: Path,
        *,
        subject: str,
        ttl: int,
        timeout: float,
        transport: Callable[[], httpx.AsyncBaseTransport],
    ) -> None:
        self.data_path = data_path
        self.subject = subject
        self.ttl = ttl
        self.timeout = timeout
        self.public_key: str | None = None
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._vapid: Any = None  # py_vapid.Vapid02, loaded on the first push
        self._making = asyncio.Lock()

    async def open(self) -> None:
        """Read the key pair if the data dir has one; `key()` makes it on first use (making it imports
        cryptography, ~15 MB of memory that a server which never pushes does not need)."""
        private, public = self.data_path / PRIVATE_KEY_FILE, self.data_path / PUBLIC_KEY_FILE
        if private.exists() and public.exists():
            self.public_key = public.read_text().strip()

    async def key(self) -> str:
        """The VAPID public key browsers subscribe with, made (once) if there is none yet."""
        async with self._making:
            if self.public_key is None:
                self.public_key = await asyncio.to_thread(ensure_keys, self.data_path)
        return self.public_key

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, subscription: Subscription, payload: bytes, *, now: float, urgent: bool) -> Sent:
        """Encrypt `payload` for the subscription and POST it to its push service."""
        await self.key()
        try:
            body, headers = await asyncio.to_thread(self._prepare, subscription, payload, now)
        except Exception as exc:  # e.g. a browser key pywebpush cannot use, a VAPID subject it refuses
            return Sent(False, f"could not prepare the push: {exc}"[:300])
        headers["Urgency"] = "high" if urgent else "normal"
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport(), follow_redirects=False, trust_env=False)
        try:
            async with asyncio.timeout(self.timeout):
                request = self._client.stream(
                    "POST", subscription.endpoint, content=body, headers=headers, timeout=self.timeout
                )
                async with request as response:
                    head = await _read_head(response)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            return Sent(False, (str(exc) or type(exc).__name__)[:300])
        if response.status_code in (200, 201, 202):
            return Sent(True)
        error = f"push service answered HTTP {response.status_code}: {head}".strip()
        return Sent(False, error, gone=response.status_code in (404, 410))

    def _prepare(self, subscription: Subscription, payload: bytes, now: float) -> tuple[bytes, dict[str, str]]:
        """The encrypted body and the headers (runs in a worker thread: ECDH, AES-GCM, ECDSA)."""
        from pywebpush import WebPusher

        info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
        encrypted = WebPusher(info).encode(payload, "aes128gcm")["body"]
        parts = urlsplit(subscription.endpoint)
        claims = {"sub": self.subject, "aud": f"{parts.scheme}://{parts.netloc}", "exp": int(now) + VAPID_LIFETIME}
        headers = {
            "TTL": str(self.ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            **self._signer().sign(claims),
        }
        return encrypted, headers

    def _signer(self) -> Any:
        if self._vapid is None:
            from cryptography.hazmat.primitives import serialization
            from py_vapid import Vapid02

            pem = (self.data_path / PRIVATE_KEY_FILE).read_bytes()
            self._vapid = Vapid02(private_key=serialization.load_pem_private_key(pem, password=None))
        return self._vapid
