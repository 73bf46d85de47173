"""Optional sampling profile of the gateway while it is measured (``--profile DIR``), with py-spy.

py-spy attaches to the running workers (``--subprocesses`` covers ``--workers N``) without changing them,
sampling without pausing the process (``--nonblocking``) and only while Python is on the CPU, so idle
waits for the upstream do not count. The raw collapsed stacks are kept (flamegraph.pl and speedscope read
them) and summarised as the functions where the samples fall: "self" is the innermost frame, "total"
counts a function once per sample that has it anywhere on the stack. Native code (uvloop, the HTTP
parser, orjson) is charged to the Python function that called it. Sampling costs CPU on a small machine,
so figures measured with --profile are a little lower than without.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

SAMPLE_RATE_HZ = 200
_ENTRY_FILES = ("gateway/__main__.py", "gateway/cli.py", "gateway/worker.py")  # above every request
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """py-spy from the PATH, else beside the running interpreter (a venv not on the PATH)."""
    found = shutil.which("py-spy")
    beside = Path(sys.executable).with_name("py-spy")
    return found or (str(beside) if beside.exists() else None)


class Recording:
    """One py-spy recording of ``pid`` and its children, running for ``duration_s`` in the background."""

    def __init__(self, pid: int, duration_s: float, out: Path) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.out = out
        self._proc = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--duration",
                str(max(1, round(duration_s))),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self, timeout_s: float = 30.0) -> str | None:
        """Wait for py-spy to write its file; the summary, or None if it failed (the reason is printed)."""
        try:
            _, err = self._proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            err = b"timed out"
        if not self.out.exists():
            print(f"py-spy wrote no profile: {err.decode(errors='replace')[-300:]}", file=sys.stderr)
            return None
        return summarize(self.out)


def _label(frame: str) -> str:
    """``handle (gateway/pipeline.py:52)`` -> ``handle (gateway/pipeline.py)``: lines merged per function."""
    match = _FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def summarize(raw: Path, top: int = 12) -> str:
    """The ``top`` functions by self samples, the gateway's own functions by total samples (where its
    stages spend, callees included), and the share of self samples per package."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            total_counts[frame] += count
    if not samples:
        return "no samples (was the process busy?)"

    def table(counter: Counter[str]) -> list[str]:
        return [f"  {100 * n / samples:5.1f}%  {name}" for name, n in counter.most_common(top)]

    own = Counter(
        {
            name: n
            for name, n in total_counts.items()
            if "(gateway/" in name and not any(entry in name for entry in _ENTRY_FILES)
        }
    )
    by_package = ", ".join(f"{name} {100 * n / samples:.0f}%" for name, n in packages.most_common(8))
    return "\n".join(
        [
            f"{samples} samples on CPU; self time by package: {by_package}",
            "top self:",
            *table(self_counts),
            "gateway functions, total (callees included):",
            *table(own),
        ]
    )


def _package(label: str) -> str:
    match = re.search(r"\(([^()/]+)", label)
    name = match.group(1) if match else "?"
    return name.removesuffix(".py") if "/" not in label else name
