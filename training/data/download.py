"""Fetch a public file once into a local cache (tiny shakespeare, hellaswag_val.jsonl)."""

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class DownloadError(OSError):
    """The file could not be fetched; ``reason`` says why (offline, refused, ...)."""

    user_error = True  # scripts report it as "error: ..." (training/errors.py)

    def __init__(self, url: str, reason):
        super().__init__(f"downloading {url} failed ({reason})")
        self.url, self.reason = url, reason


def fetch_once(url: str, target: Path, timeout: float = 60) -> Path:
    """``target`` if it exists, else download ``url`` to it through a temporary file (never a partial target)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(url, getattr(error, "reason", error)) from error
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.rename(target)
    return target


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be used right now (None when it can): HF_HUB_OFFLINE, or no connection to
    its endpoint within ``timeout`` seconds. Checked before Hub work so an offline machine fails at once instead of
    after the client's retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or constants.ENDPOINT
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} cannot be reached ({error.strerror or error})"
    return None
