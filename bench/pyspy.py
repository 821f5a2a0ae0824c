"""Profile the server with py-spy while a scenario runs, and rank where its event loop spends time.

``py-spy record --nonblocking --threads --format raw`` writes one line per distinct stack with its
sample count; only the event-loop thread (MainThread) is ranked, so bcrypt and other executor
work during set-up does not crowd out the message path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy binary next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    binary = py_spy()
    if binary is None:
        return None
    command = [binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200"]
    command += ["--nonblocking", "--threads", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rank(raw: Path, top: int = 15) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, top functions by own time %, top functions by inclusive time %)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0]:
            continue
        frames = frames[1:]
        count = int(count_text)
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    skip = ("runpy", "trustmess/__main__.py", "Runner.run", "run_until_complete")
    ranked_inclusive = [(f, n) for f, n in inclusive.most_common() if not any(s in f for s in skip)]

    def pct(items: list[tuple[str, int]]) -> list[tuple[str, float]]:
        return [(frame, 100 * n / total) for frame, n in items[:top]] if total else []

    return total, pct(own.most_common()), pct(ranked_inclusive)


def markdown(raw: Path) -> str:
    total, own, inclusive = rank(raw)
    if not total:
        return "_no samples recorded_"
    lines = [
        f"{total:,} samples of the event-loop thread over the measured window. `Runner.run` as "
        "own time is time spent in the event loop's C code (uvloop: polling and socket system "
        "calls); a Python line's own time includes the C functions it calls (e.g. the "
        "socket write system call inside `transport.writelines`).",
        "",
        "| own time | function |",
    ]
    lines.append("|---:|---|")
    lines += [f"| {share:.1f}% | `{frame}` |" for frame, share in own]
    lines += ["", "| inclusive | function |", "|---:|---|"]
    lines += [f"| {share:.1f}% | `{frame}` |" for frame, share in inclusive]
    return "\n".join(lines)
