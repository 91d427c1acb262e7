"""MLflow calls of a trial that ride out a tracking-server outage, and resume promptly.

A trial logs metrics every few steps. When the tracking server restarts, MLflow's
own HTTP retries (urllib3, 7 retries with delays doubling up to 64 s) do keep the
trial alive, but a trial that hit the outage then sleeps through the doubling
delays long after the server is back: on the multi-node test a 40 s outage
stalled trials for over two minutes. A dropped metric is not an option either:
the runs view would show holes, and the resumed-trial logic (tracking.RunLogger)
counts on the history being complete.

`PatientClient` wraps an `MlflowClient`: every call that fails because the server
cannot be reached (connection refused or reset, timeouts, HTTP 5xx/429) is retried
with short, capped delays (0.5 s doubling to 5 s) for up to RRN_TRACKING_RETRY_S
seconds (default 600); then the error is raised, and the trial fails with it.
Other errors (a bad parameter, a missing run) are raised at once. MLflow's own
retries are shortened in the trial process (unless the user set them) so that the
capped delays here, not urllib3's doubling ones, decide when the next try happens.

Repeating a metric write is harmless: MLflow stores a metric point by (key, value,
timestamp, step), and the same point logged twice is kept once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from orchestration.storage.retry import env_seconds

log = logging.getLogger(__name__)

ENV_RETRY_S = "RRN_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 600.0
#: MLflow's HTTP retry settings for trial processes (user values win).
SHORT_MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_TRANSIENT_WORDS = ("connection", "connect", "timed out", "timeout", "max retries exceeded",
                    "temporarily unavailable", "bad gateway", "service unavailable",
                    "gateway timeout", "internal server error", "too many requests",
                    "remote end closed", "reset by peer", "broken pipe", "too many 500",
                    "too many 502", "too many 503", "too many 504", "too many 429")


def retry_budget() -> float:
    """Seconds a tracking call keeps retrying (env RRN_TRACKING_RETRY_S, default 600)."""
    return env_seconds(ENV_RETRY_S, DEFAULT_RETRY_S)


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` says the tracking server could not be reached or was failing,
    as opposed to refusing the request itself (4xx other than 429)."""
    code = getattr(err, "error_code", "") or ""
    if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST"):
        return False
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        text = f"{type(current).__name__} {current}".lower()
        if any(word in text for word in _TRANSIENT_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def patiently(what: str, call: Callable[[], Any], budget: float | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Any:
    """`call()`, retried while the server is unreachable (see module docstring)."""
    budget = retry_budget() if budget is None else budget
    deadline = time.monotonic() + budget
    delay, failures = 0.5, 0
    while True:
        try:
            result = call()
            if failures:
                log.warning("tracking: %s went through after %d failed attempt(s)", what, failures)
            return result
        except Exception as err:  # noqa: BLE001 - classified below
            left = deadline - time.monotonic()
            if not is_unreachable(err) or left <= 0:
                raise
            failures += 1
            if failures == 1:
                log.warning("tracking server unreachable (%s: %s); retrying %s for up to %.0fs",
                            type(err).__name__, str(err)[:200], what, left)
            sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


class PatientClient:
    """An MlflowClient whose methods retry while the tracking server is away."""

    def __init__(self, client: Any) -> None:
        for key, value in SHORT_MLFLOW_RETRIES.items():
            os.environ.setdefault(key, value)
        self._client = client

    @property
    def tracking_uri(self) -> str:
        return self._client.tracking_uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(name, lambda: attr(*args, **kwargs))

        return call
