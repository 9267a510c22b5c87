"""Output and waiting: one rich console, durations and money in words, bounded polls that Ctrl-C stops cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from rich.console import Console

from ops.errors import Interrupted, OpsError

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


@dataclass
class Clock:
    """Time for waits; tests give a fake one (no test waits for real time)."""

    sleep: Callable[[float], None] = field(default=time.sleep)
    monotonic: Callable[[], float] = field(default=time.monotonic)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def elapsed(start: datetime | None, end: datetime | None) -> str:
    """The duration between two times, or "" when one is missing or it took under a second."""
    seconds = (end - start).total_seconds() if start and end else 0
    return duration(seconds) if seconds >= 1 else ""


def money(amount: float) -> str:
    return f"${amount:,.0f}" if amount >= 100 else f"${amount:,.2f}"


def poll(
    probe: Callable[[], tuple[bool, T, str]],
    *,
    clock: Clock,
    interval: float,
    timeout: float,
    waiting_for: str,
    resume: str,
    on_timeout: str,
) -> T:
    """Call ``probe`` every ``interval`` seconds until it reports done; returns its value.

    ``probe`` returns (done, value, status line). The status line is shown while waiting. After ``timeout``
    seconds an ``OpsError`` says ``on_timeout``; Ctrl-C raises ``Interrupted`` naming what keeps running in AWS
    (``waiting_for``) and the command that resumes (``resume``).
    """
    deadline = clock.monotonic() + timeout
    try:
        with console.status(waiting_for) as status:
            while True:
                done, value, line = probe()
                if done:
                    return value
                status.update(f"{waiting_for}: {line}")
                if clock.monotonic() >= deadline:
                    raise OpsError(
                        f"gave up after {duration(timeout)} waiting for {waiting_for} ({line}): {on_timeout}"
                    )
                clock.sleep(interval)
    except KeyboardInterrupt:
        raise Interrupted(waiting_for, resume) from None
