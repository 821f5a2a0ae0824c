"""Process-wide counters, rendered in the Prometheus text format by ``GET /metrics``."""

from __future__ import annotations

import resource
from collections import Counter
from pathlib import Path


class Metrics:
    """Counters that are not already kept by the hub, the writer or the gateway."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.connections_opened = 0
        # What became of the server's mails (mail/outbox.py): queued, sent, retried, ...
        self.mails: Counter[str] = Counter()


def process_rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Sample = tuple[str, str, str, list[tuple[dict[str, str], float]]]


def render(samples: list[Sample]) -> str:
    """``(name, type, help, [(labels, value)])`` → Prometheus exposition text."""
    lines: list[str] = []
    for name, kind, help_text, values in samples:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in values:
            label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            shown = f"{name}{{{label_text}}}" if label_text else name
            lines.append(f"{shown} {value:g}" if isinstance(value, float) else f"{shown} {value}")
    return "\n".join(lines) + "\n"
