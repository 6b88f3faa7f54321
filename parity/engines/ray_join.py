"""Joining a running Ray cluster: what authentication it needs, found out before ``ray.init``.

Since Ray 2.5x a cluster may use token authentication (``RAY_AUTH_MODE=token`` on its nodes), and
``ray.init(address=...)`` never turns it on by itself for an explicit address: it retries ten times,
logging "InvalidAuthToken", then fails. So the driver first asks the cluster's GCS for its metadata
without a token (quietly, a fraction of a second); when that is refused for authentication, it
switches this process to token mode, as Ray's own ``ray start`` does, if a token is available.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from ..errors import HarnessError, one_line
from ..optional import lazy

# Ray's own modules for what it does not expose (cluster metadata, token mode), as its `ray start` uses them.
usage_lib = lazy("ray._common.usage.usage_lib")
raylet = lazy("ray._raylet")
token_setup = lazy("ray._private.authentication.authentication_token_setup")
ray_exceptions = lazy("ray.exceptions")

TOKEN_HELP = ("Ray reads the cluster's token from $RAY_AUTH_TOKEN, from the file $RAY_AUTH_TOKEN_PATH names, "
              "or from ~/.ray/auth_token (`ray get-auth-token` prints it on a cluster node)")


def token_source() -> str | None:
    """Where Ray would read this process's token from, or None when it has none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "$RAY_AUTH_TOKEN"
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if named:
        return named if Path(named).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ client logs each refused call to fd 2; the one-line error says it instead."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _metadata(address: str) -> dict:
    with _quiet_stderr():
        return usage_lib.get_cluster_metadata(raylet.GcsClient(address=address)) or {}


def _token_mode() -> None:
    token_setup._enable_token_auth()  # RAY_AUTH_MODE=token for this process, and Ray's cached config re-read


def join(address: str) -> dict:
    """Set this process's auth mode from what the cluster at ``address`` needs; its Ray version and auth mode.

    Raises ``HarnessError`` (one line) when nothing answers there, or the cluster wants a token
    this machine does not have or that it refuses.
    """
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot join the Ray cluster {address}: nothing answers there ({one_line(exc)})") from None
    explicit = os.environ.get("RAY_AUTH_MODE")
    try:
        meta = _metadata(address)
        mode = (explicit or "disabled").lower()
    except ray_exceptions.AuthenticationError:
        where = token_source()
        if explicit and explicit.lower() != "token":
            raise HarnessError(f"the Ray cluster {address} uses token authentication and RAY_AUTH_MODE={explicit} here: "
                               f"unset it or set it to token; {TOKEN_HELP}") from None
        if not where:
            raise HarnessError(f"the Ray cluster {address} uses token authentication and this machine has no token; {TOKEN_HELP}") from None
        if explicit:  # token mode already, and refused
            raise HarnessError(f"the Ray cluster {address} refuses the token from {where}: give the cluster's own; {TOKEN_HELP}") from None
        _token_mode()
        mode = "token"
        try:
            meta = _metadata(address)
        except ray_exceptions.AuthenticationError:
            raise HarnessError(f"the Ray cluster {address} refuses the token from {where}: give the cluster's own; {TOKEN_HELP}") from None
    except Exception as exc:  # RpcError and the like: not a GCS, or not reachable in time
        raise HarnessError(f"cannot join the Ray cluster {address}: {one_line(exc)}") from None
    return {"ray_version": meta.get("ray_version"), "auth": mode}
