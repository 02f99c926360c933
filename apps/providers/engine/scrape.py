"""Scrapes a server's Prometheus metrics (vLLM, SGLang, TGI; a DCGM exporter) every second while a
load step runs. CONTRACT (issue 14) — implementation pending in this module.

`scrape_loop(session, urls, stop)` GETs every URL once per `interval_s` until `stop` is set, parses the
text exposition format, and keeps the series the product charts, under engine-neutral names
(see NAMES), as `ScrapedSeries`. A failed scrape is a None in every series at that time and a line in
`errors`, never an exception out of the loop.
"""

import asyncio
from dataclasses import dataclass, field

import aiohttp


@dataclass
class ScrapedSeries:
    t_s: list[float] = field(default_factory=list)  # seconds since the loop started, one per scrape
    metrics: dict[str, list[float | None]] = field(default_factory=dict)  # engine-neutral name -> value per scrape
    engine: str = ""  # "vllm" | "sglang" | "tgi" | "" — recognised from the metric names
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"t_s": self.t_s, "metrics": self.metrics, "engine": self.engine, "urls": self.urls,
                "errors": self.errors}  # fmt: skip


async def scrape_loop(
    session: aiohttp.ClientSession, urls: list[str], stop: asyncio.Event, interval_s: float = 1.0
) -> ScrapedSeries:
    raise NotImplementedError
