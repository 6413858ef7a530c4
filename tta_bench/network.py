"""Downloads that fail say so in one line: what could not be fetched and the offline alternative.

Without network the Hugging Face client retries every file five times with back-off (over a minute for one timm
model), logging each retry, and ends in a chained traceback. ``fetching`` wraps a call that may download (teacher
weights, a Hub dataset): it checks once, in about a second, whether the Hub can be reached at all; if not, the call
runs in the client's offline mode, so files already in the local cache still load and missing ones fail at once.
Network failures become a UserError naming the thing and the alternative (``--weights PATH``, ``--data-root PATH``);
the client's retry log is silenced meanwhile. Other errors pass through untouched.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator
from urllib.parse import urlparse

from .errors import UserError

PROBE_TIMEOUT = 3.0  # seconds for one TCP connection to the Hub
QUIET_LOGGERS = ("huggingface_hub", "datasets", "timm", "open_clip", "urllib3", "httpx", "httpx2", "filelock")
# exception class names (anywhere in the chain) that mean "the network or the Hub did not deliver"
NETWORK_ERRORS = frozenset({
    "ConnectionError", "ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "Timeout",
    "TimeoutError", "gaierror", "URLError", "MaxRetryError", "NewConnectionError", "LocalEntryNotFoundError",
    "OfflineModeIsEnabled", "ProxyError", "SSLError",
})
HUB_ERRORS = frozenset({"HfHubHTTPError", "RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError",
                        "EntryNotFoundError", "RemoteEntryNotFoundError", "DatasetNotFoundError"})
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One TCP connection to the Hub. Behind a proxy the answer is unknowable this way: assume reachable."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    try:
        socket.create_connection(hub_host(), timeout=PROBE_TIMEOUT).close()
        return True
    except OSError:
        return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for e in _chain(exc) for cls in type(e).__mro__}


def failure_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` is a network or Hub failure, else None."""
    names = _names(exc)
    if names & NETWORK_ERRORS or any(isinstance(e, OSError) and "couldn't connect" in str(e) for e in _chain(exc)):
        return "no network connection to the Hugging Face Hub, and no copy in the local cache"
    if names & HUB_ERRORS:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the Hub refused it ({first[:160]})"
    return None


@contextmanager
def _offline(active: bool) -> Iterator[None]:
    """The Hugging Face clients' own offline mode (cache only), for the duration of the block."""
    if not active:
        yield
        return
    targets = []
    for module, name in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules or module.startswith("huggingface_hub"):
            try:
                mod = __import__(module, fromlist=[name])
            except ImportError:
                continue
            targets.append((mod, name, getattr(mod, name)))
            setattr(mod, name, True)
    try:
        yield
    finally:
        for mod, name, value in targets:
            setattr(mod, name, value)


@contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def fetching(what: str, alternative: str) -> Iterator[None]:
    """Run a block that may download ``what``; a network or Hub failure becomes one line naming ``alternative``."""
    offline = not hub_reachable()
    try:
        with _quiet(), _offline(offline):
            yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (only network and Hub failures are translated; the rest re-raised)
        reason = failure_reason(exc)
        if reason is None:
            raise
        raise UserError(f"could not fetch {what}: {reason}; offline alternative: {alternative}") from None
