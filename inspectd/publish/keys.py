"""CURVE keys for the verdict sockets (ZeroMQ certificate files, zmq.auth format).

A key pair is two files: ``NAME.key`` (public: give it away) and
``NAME.key_secret`` (secret: stays on its machine, mode 0600).

On the inspection PC::

    python -m inspectd.publish.keys /etc/inspectd/curve --name server
    # config: [publish] curve_secret_key = "/etc/inspectd/curve/server.key_secret"
    #                   curve_clients_dir = "/etc/inspectd/curve/clients"

For each client (PLC gateway, a line engineer's laptop)::

    python -m inspectd.publish.keys ./keys --name plc-gw-1
    # copy plc-gw-1.key (public) into the daemon's clients dir;
    # the client needs plc-gw-1.key_secret and the server's server.key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zmq
import zmq.auth


class CurveKeyError(Exception):
    """A CURVE key file is missing, unreadable or not the right kind; the message names it."""


def generate_keys(key_dir: str | Path, name: str = "server", *, overwrite: bool = False) -> tuple[Path, Path]:
    """Create ``<key_dir>/<name>.key`` and ``<name>.key_secret``; returns (public, secret) paths.

    Refuses to replace an existing pair unless `overwrite` (regenerating the
    server's keys locks every client out).
    """
    d = Path(key_dir)
    d.mkdir(parents=True, exist_ok=True)
    pub, sec = d / f"{name}.key", d / f"{name}.key_secret"
    if not overwrite and (pub.exists() or sec.exists()):
        raise FileExistsError(f"{pub} or {sec} already exists (pass overwrite=True to replace them)")
    old = os.umask(0o077)
    try:
        p, s = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old)
    os.chmod(s, 0o600)
    os.chmod(p, 0o644)  # the public half is meant to be copied around
    return Path(p), Path(s)


def load_secret(path: str | Path, what: str = "CURVE secret key") -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file; CurveKeyError naming the file otherwise."""
    p = Path(path)
    try:
        public, secret = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError) as e:
        reason = "no such file" if not p.exists() else (getattr(e, "strerror", None) or str(e))
        raise CurveKeyError(f"{what} {p}: cannot load ({reason})") from e
    if secret is None:
        raise CurveKeyError(
            f"{what} {p}: holds only a public key (give the .key_secret file made by generate_keys)"
        )
    mode = p.stat().st_mode & 0o777
    if mode & 0o077:
        raise CurveKeyError(
            f"{what} {p}: readable by others (mode {mode:04o}); a secret key must be private: chmod 600 {p}"
        )
    return public, secret


def load_public(path: str | Path, what: str = "CURVE public key") -> bytes:
    """The public key from a ``.key`` (or ``.key_secret``) file; CurveKeyError naming the file otherwise."""
    p = Path(path)
    try:
        public, _ = zmq.auth.load_certificate(str(p))
    except (OSError, ValueError) as e:
        reason = "no such file" if not p.exists() else (getattr(e, "strerror", None) or str(e))
        raise CurveKeyError(f"{what} {p}: cannot load ({reason})") from e
    return public


def check_clients_dir(path: str | Path | None) -> Path:
    """The directory of authorised client public keys; CurveKeyError if unusable."""
    if path is None:
        raise CurveKeyError("curve_secret_key is set but curve_clients_dir is not: no client could be authorised")
    p = Path(path)
    if not p.is_dir():
        raise CurveKeyError(f"CURVE clients dir {p}: not a directory")
    try:
        keys = [k for k in p.iterdir() if k.suffix == ".key"]
    except OSError as e:
        raise CurveKeyError(f"CURVE clients dir {p}: cannot read ({e.strerror or e})") from e
    if not keys:
        raise CurveKeyError(
            f"CURVE clients dir {p}: no client public keys (*.key): no subscriber, query client or PLC gateway "
            "could connect (copy each client's .key there, from inspectd keys)"
        )
    for k in keys:
        load_public(k, "CURVE client key")
    return p


def client_options(sock: zmq.Socket, server_key: str | Path, client_secret: str | Path) -> None:
    """Make `sock` a CURVE client of the server whose public key is in `server_key`."""
    sock.curve_serverkey = load_public(server_key, "server public key")
    public, secret = load_secret(client_secret, "client secret key")
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inspectd.publish.keys", description="Create a CURVE key pair.")
    ap.add_argument("dir", type=Path)
    ap.add_argument("--name", default="server")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    try:
        pub, sec = generate_keys(a.dir, a.name, overwrite=a.overwrite)
    except FileExistsError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"public: {pub}\nsecret: {sec}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
