"""``GET /metrics``: Prometheus text format for this process."""

from __future__ import annotations

from aiohttp import web

from trustmess.appkeys import GATEWAY, HUB, METRICS, WRITER
from trustmess.metrics import Sample, process_cpu_seconds, process_rss_bytes, render

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Connections, subscriptions, persisted messages, deliveries, batches, errors, process."""
    app = request.app
    gateway, hub, writer, counters = app[GATEWAY], app[HUB], app[WRITER], app[METRICS]
    samples: list[Sample] = [
        (
            "trustmess_connections",
            "gauge",
            "Open authenticated sockets.",
            [({}, len(gateway.connections))],
        ),
        (
            "trustmess_connections_opened_total",
            "counter",
            "Sockets authenticated.",
            [({}, counters.connections_opened)],
        ),
        (
            "trustmess_subscriptions",
            "gauge",
            "Joined (socket, conversation) pairs.",
            [({}, hub.subscription_count())],
        ),
        (
            "trustmess_messages_persisted_total",
            "counter",
            "Messages stored.",
            [({}, writer.persisted)],
        ),
        (
            "trustmess_message_changes_total",
            "counter",
            "Edits, deletions and reactions stored (stream entries).",
            [({}, writer.changed)],
        ),
        (
            "trustmess_commit_batches_total",
            "counter",
            "Group-commit batches.",
            [({}, writer.batches)],
        ),
        (
            "trustmess_events_published_total",
            "counter",
            "Events published to the hub.",
            [({}, hub.published)],
        ),
        (
            "trustmess_deliveries_total",
            "counter",
            "Events queued on sockets.",
            [({}, hub.deliveries)],
        ),
        (
            "trustmess_errors_total",
            "counter",
            "Error frames sent, by code.",
            [({"code": code}, n) for code, n in sorted(counters.errors.items())],
        ),
        (
            "trustmess_closes_total",
            "counter",
            "Sockets closed by the server, by close code.",
            [({"code": str(code)}, n) for code, n in sorted(counters.closes.items())],
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident set size.",
            [({}, process_rss_bytes())],
        ),
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time.",
            [({}, process_cpu_seconds())],
        ),
    ]
    samples += hub.broker.samples()
    return web.Response(text=render(samples), content_type="text/plain", charset="utf-8")
