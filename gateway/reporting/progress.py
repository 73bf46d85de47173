"""A one-line progress bar on stderr for long ledger reads (no dependency).

On a terminal it is redrawn in place; elsewhere (CI logs, pipes) a plain line is printed every few
seconds, and only once the read has taken longer than ``after_s``, so short reads stay silent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 30


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        after_s: float = 2.0,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = max(0, total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.after_s = after_s
        self.every_s = every_s if not self.tty else 0.1
        self.clock = clock
        self.done = 0
        self._started = clock()
        self._drawn_at: float | None = None

    def advance(self, amount: int) -> None:
        self.done += amount
        now = self.clock()
        if not self.tty and now - self._started < self.after_s:
            return
        if self._drawn_at is None or now - self._drawn_at >= self.every_s:
            self._draw(now)

    def finish(self) -> None:
        if self._drawn_at is not None:
            self._draw(self.clock())
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = round(share * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        text = f"{self.label} [{bar}] {share * 100:5.1f} % ({now - self._started:.0f} s)"
        self.stream.write(("\r" + text) if self.tty else text + "\n")
        self.stream.flush()
