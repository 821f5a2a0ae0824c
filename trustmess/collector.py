"""The garbage collector's settings for a long-running process with many sockets: the server
(runtime/server.py) and the load tester (loadtest/eventloop.py)."""

from __future__ import annotations

import gc

# CPython's defaults are 700, 10, 10. A node that takes over 2,000 sockets grows its live
# objects by half within a second; with the defaults every 25% of growth was a full collection
# of 150-270 ms with the loop stopped (7 of them in 11 s, bench/RESULTS.md "Reconnect storm"),
# and a young collection every 700 allocations promoted requests still in flight. Young
# collections every 10,000 net allocations (a few ms each) leave fewer survivors, so full ones
# come more rarely. (20,000 and 20 made the middle generation's collections take 130 ms; 5,000
# measured like 10,000.) The load tester's own full collections (115-160 ms with 4,000 sockets)
# showed up as the server's latency: it runs with the same settings.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_collector() -> None:
    """What the process holds after start-up lives until exit: keep it out of every full
    collection (``gc.freeze``), and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
