"""Prometheus metrics, one registry per app (tests build many apps).

Counters are incremented where things happen (requests in the middleware;
events, signals and starts by ``engine.dispatch`` through the
``DispatchCounters`` methods). Sends are not counted in the API process — the worker sends them — so they are read from the
deliveries ledger at scrape time: the numbers are right whichever process
sent, and survive restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.queries import delivery_totals
from engine.store import Store

log = logging.getLogger("journeys.api")


class DeliveriesCollector(Collector):
    def __init__(self, store_ref: object) -> None:
        self._app_state = store_ref

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "journeys_deliveries",
            "Messages in the deliveries ledger by channel and outcome",
            labels=["channel", "status"],
        )
        store: Store | None = getattr(self._app_state, "store", None)
        if store is not None:
            try:
                for (channel, status), n in sorted(delivery_totals(store).items()):
                    family.add_metric([channel, status], n)
            except Exception:  # noqa: BLE001 - a scrape must not fail because the DB blinked
                log.warning("could not read deliveries for metrics", exc_info=True)
        yield family


class Metrics:
    def __init__(self, app_state: object) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "journeys_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "journeys_http_request_duration_seconds", "Request latency by route", ["route"], registry=self.registry
        )
        self.events = Counter(
            "journeys_events_ingested",
            "Segment messages ingested by type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.runs_started = Counter(
            "journeys_runs_started", "Journey runs started by trigger", ["journey", "trigger"], registry=self.registry
        )
        self.signals = Counter(
            "journeys_events_delivered",
            "Events signalled to running runs by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(DeliveriesCollector(app_state))

    # engine.dispatch.DispatchCounters: what the dispatcher did, counted here
    def event(self, kind: str, outcome: str) -> None:
        self.events.labels(kind, outcome).inc()

    def signal(self, outcome: str) -> None:
        self.signals.labels(outcome).inc()

    def run_started(self, journey_id: str, trigger: str) -> None:
        self.runs_started.labels(journey_id, trigger).inc()
