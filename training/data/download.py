"""Fetch a public file once into a local cache (tiny shakespeare, hellaswag_val.jsonl)."""

import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(OSError):
    """The file could not be fetched; ``reason`` says why (offline, refused, ...)."""

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
