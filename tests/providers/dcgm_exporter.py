"""Metrics servers for the scrape tests: a DCGM exporter whose GPU readings the test sets, and any Prometheus
text the test builds (an engine's /metrics), on 127.0.0.1. Every GET is counted with its time, and the server
can be told to fail (a status) or to answer late."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Gpu:
    """One GPU's readings as the exporter reports them."""

    utilization_pct: float = 0.0
    memory_used_mib: float = 0.0
    power_w: float = 0.0
    energy_mj: float | None = None  # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, left out when None


def dcgm_text(gpus: dict[int, Gpu]) -> str:
    """The exporter's page: one sample per GPU of each field, with dcgm-exporter's labels."""
    fields = [
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "utilization_pct"),
        ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "memory_used_mib"),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_w"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).",
         "energy_mj"),
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM frequency (in MHz).", None),  # one the scraper does not map
    ]  # fmt: skip
    lines = []
    for name, kind, help_text, attribute in fields:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for index, gpu in gpus.items():
            value = 1410.0 if attribute is None else getattr(gpu, attribute)
            if value is None:
                continue
            labels = f'gpu="{index}",UUID="GPU-{index:08d}",device="nvidia{index}",modelName="NVIDIA H100 80GB HBM3"'
            lines.append(f"{name}{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


@dataclass
class MetricsServer:
    """Serves `text()` at /metrics; `status` other than 200 fails every GET, `delay_s` answers late."""

    text: Callable[[], str]
    status: int = 200
    delay_s: float = 0.0
    hits: list[float] = field(default_factory=list)  # time.monotonic() of every GET
    _runner: web.AppRunner | None = None
    url: str = ""

    async def _metrics(self, request: web.Request) -> web.Response:
        self.hits.append(time.monotonic())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        return web.Response(text=self.text(), content_type="text/plain", charset="utf-8")

    async def start(self) -> "MetricsServer":
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/metrics"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def dcgm_exporter(gpus: dict[int, Gpu]) -> MetricsServer:
    """A DCGM exporter reporting `gpus` (change them in place and the next GET reports the new readings)."""
    return MetricsServer(lambda: dcgm_text(gpus))
