"""A load tester for TrustMess: ``python -m trustmess.loadtest`` or ``await run_load(config)``.

It speaks the socket protocol with the ``websockets`` library (an independent client), measures
send→reply and send→delivery latency, throughput and CPU per message, and verifies that every
replied message reached every joined socket exactly once and in order.
"""

from trustmess.loadtest.config import LoadConfig
from trustmess.loadtest.runner import RunResult, run_load

__all__ = ["LoadConfig", "RunResult", "run_load"]
