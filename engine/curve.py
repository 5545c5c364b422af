"""Authenticated, encrypted transport for non-loopback serving: ZeroMQ CURVE.

A server bound anywhere but loopback must have a CURVE key pair (`reverie keys` makes one); clients then
need the server's public key to connect, and their traffic is encrypted. Without it a client's handshake
fails inside ZeroMQ: it never reaches the server's loop, so the server keeps serving everyone else.
Optionally the server admits only clients whose public keys are in a folder (`allow_clients`).
Loopback (`127.0.0.0/8`, `localhost`, `::1`, `ipc://`, `inproc://`) stays key-free for local play.

Key files are ZeroMQ's certificate format (`zmq.auth`): `NAME.key` (public, give it to clients) and
`NAME.key_secret` (keep it on the server).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path


class CurveError(ValueError):
    """A missing, unreadable or wrong key file, or a non-loopback bind without keys."""


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a hostname: reachable from elsewhere as far as we know
        return False


def make_keys(folder: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write a new key pair `folder/NAME.key` and `folder/NAME.key_secret` (the secret one readable by its
    owner only). Refuses to overwrite an existing pair. Returns (public, secret) paths."""
    import zmq.auth

    folder = Path(folder)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise CurveError(f"{public} or {secret} exists already; pick another name or folder")
    folder.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(str(folder), name)
    secret.chmod(0o600)
    return public, secret


def _load(path: str | Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    path = Path(path)
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read the CURVE key file {path}: {exc}") from None
    if want_secret and secret is None:
        raise CurveError(f"{path} holds no secret key (the server needs NAME.key_secret, not NAME.key)")
    return public, secret


class CurveServer:
    """Makes a server socket CURVE-authenticated, with ZeroMQ's authenticator thread (one per context)."""

    def __init__(self, ctx, secret_key_file: str | Path, allow_clients: str | Path | None = None) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        self.public, self.secret = _load(secret_key_file, want_secret=True)
        if allow_clients is not None and not Path(allow_clients).is_dir():
            raise CurveError(f"--allow-clients {allow_clients} is not a folder of client public keys")
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allow_clients) if allow_clients is not None
                                  else zmq.auth.CURVE_ALLOW_ANY)

    def apply(self, sock) -> None:
        """Before `bind`: the socket serves CURVE only."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        self.auth.stop()


def secure_client(sock, server_key_file: str | Path, client_key_file: str | Path | None = None) -> None:
    """Before `connect`: speak CURVE to the server whose public key is in `server_key_file`, as the
    client whose secret key is in `client_key_file` (a fresh one-off key pair when None)."""
    import zmq

    server_public, _ = _load(server_key_file, want_secret=False)
    if client_key_file is not None:
        public, secret = _load(client_key_file, want_secret=True)
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
