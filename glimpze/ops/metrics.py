"""Prometheus metrics: a registry of counters, histograms and gauges, and the text exposition format.

Each `Glimpze` owns one `Registry`. A module declares its metrics on it once, when it is built
(`registry.counter(name, help, labels)`), and bumps them in memory as things happen: one dict
update, well under a microsecond on the ingest path. Figures that live in the database (queue
depth, sizes) are gauges set by collectors, async functions run at each scrape
(`registry.collector(fn)`). `render()` runs the collectors and writes the text format.

A metric is rendered once declared, with no samples until it has some, so a dashboard sees its
HELP and TYPE from the first scrape. Declaring the same name twice returns the same metric
(it must agree on type and labels).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

log = logging.getLogger("glimpze.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; ingest answers in 0.2-20 ms on a healthy box, so the buckets are dense there.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = tuple[str, ...]
Collector = Callable[[], Awaitable[None]]


class Metric:
    """A named family of samples; `values` maps label values (in `labels` order) to a number."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.values: dict[Labels, float] = {}

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def lines(self) -> list[str]:
        return [f"{self.name}{self._labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]

    def _labels(self, values: Labels) -> str:
        pairs = [f'{name}="{_escape(value)}"' for name, value in zip(self.labels, values)]
        return "{" + ",".join(pairs) + "}" if pairs else ""


class Counter(Metric):
    """A value that only goes up (since the process started)."""

    kind = "counter"

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


class Gauge(Metric):
    """A value that goes up and down; usually set by a collector just before a scrape."""

    kind = "gauge"

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count (no labels)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help)
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        lines = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            running += count
            le = "+Inf" if bound == math.inf else _number(bound)
            lines.append(f'{self.name}_bucket{{le="{le}"}} {running}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


M = TypeVar("M", Counter, Gauge)


class Registry:
    """The metrics of one Glimpze instance; see the module docstring."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._collectors: list[Collector] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._declare(Counter, name, help, labels)

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._declare(Gauge, name, help, labels)

    def histogram(self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        existing = self._metrics.get(name)
        if existing is not None:
            if not isinstance(existing, Histogram):
                raise ValueError(f"metric {name} is already declared as a {existing.kind}")
            return existing
        metric = self._metrics[name] = Histogram(name, help, buckets)
        return metric

    def collector(self, fn: Collector) -> Collector:
        """Run `fn` before every scrape (it sets gauges); usable as a decorator."""
        self._collectors.append(fn)
        return fn

    def __contains__(self, name: str) -> bool:
        return name in self._metrics

    def __getitem__(self, name: str) -> Metric:
        return self._metrics[name]

    async def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every metric, collectors run first."""
        for collect in self._collectors:
            try:
                await collect()
            except Exception:  # a broken collector must not take the whole scrape down
                log.exception("metrics collector %s failed", getattr(collect, "__name__", collect))
        out: list[str] = []
        for metric in self._metrics.values():
            out.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
            out.append(f"# TYPE {metric.name} {metric.kind}")
            out.extend(metric.lines())
        out.append("")
        return "\n".join(out).encode()

    def _declare(self, kind: type[M], name: str, help: str, labels: Sequence[str]) -> M:
        existing = self._metrics.get(name)
        if existing is not None:
            if type(existing) is not kind or existing.labels != tuple(labels):
                raise ValueError(
                    f"metric {name} is already declared as a {existing.kind} with labels {existing.labels}"
                )
            return existing
        metric = self._metrics[name] = kind(name, help, labels)
        return metric


def _number(value: float) -> str:
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
