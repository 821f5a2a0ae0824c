"""``GET /metrics``: the process's counters in the Prometheus text format.

Optionally guarded by a bearer token (``TRUSTMESS_METRICS_TOKEN``), and optionally served on a
listener of its own (``TRUSTMESS_METRICS_PORT``, ``TRUSTMESS_METRICS_HOST``) instead of the API's
port, so it can stay on an internal network: :func:`metrics_app` is that listener's app.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from trustmess.appkeys import GATEWAY, HUB, METRICS, PRESENCE, SETTINGS, WRITER
from trustmess.auth import bearer_token, unauthenticated
from trustmess.errors import not_found
from trustmess.http.middleware import json_errors
from trustmess.metrics import Sample, process_cpu_seconds, process_rss_bytes, render

routes = web.RouteTableDef()

# On the metrics listener's own app: the application whose counters it shows.
SERVED_APP = web.AppKey("served_app", web.Application)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Connections, subscriptions, persisted messages, deliveries, batches, errors, process.

    404 here when the metrics have a listener of their own.
    """
    if request.app[SETTINGS].metrics_port is not None:
        raise not_found()
    return _metrics_response(request, request.app)


async def _metrics_on_own_listener(request: web.Request) -> web.Response:
    return _metrics_response(request, request.app[SERVED_APP])


def metrics_app(served: web.Application) -> web.Application:
    """The app of the separate metrics listener: ``GET /metrics`` of ``served``."""
    app = web.Application(middlewares=[json_errors])
    app[SERVED_APP] = served
    app.router.add_get("/metrics", _metrics_on_own_listener)
    return app


def _metrics_response(request: web.Request, app: web.Application) -> web.Response:
    token = app[SETTINGS].metrics_token
    if token is not None:
        given = bearer_token(request.headers.get("Authorization"))
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise unauthenticated("wrong metrics token")
    return web.Response(text=render_samples(app), content_type="text/plain", charset="utf-8")


def render_samples(app: web.Application) -> str:
    """Everything ``/metrics`` shows, as Prometheus exposition text."""
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
            "trustmess_mails_total",
            "counter",
            "Mails by outcome: queued, sent (or logged without SMTP), retried (a failed try), "
            "failed, dropped (queue full), skipped (nothing to send).",
            [({"outcome": outcome}, n) for outcome, n in sorted(counters.mails.items())],
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
    presence = app[PRESENCE]
    samples += [
        (
            "trustmess_presence_online",
            "gauge",
            "Users with a socket on this node (or within the grace).",
            [({}, presence.online_here())],
        ),
        (
            "trustmess_presence_changes_total",
            "counter",
            "Presence changes (online, offline) this node published.",
            [({}, presence.changes)],
        ),
        (
            "trustmess_presence_queries_total",
            "counter",
            "Audience queries (one per batch of presence changes).",
            [({}, presence.queries)],
        ),
    ]
    samples += hub.broker.samples()
    return render(samples)
