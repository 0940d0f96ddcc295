"""The load generator: its own process, so its CPU is not the system's, and polite about it.

How it avoids starving the system it measures on a 2-core machine:
- it runs in a separate process (spawned), one event loop, so it uses at most one core;
- it lowers its own priority (`os.nice(10)` by default) below the watcher's, whose session it
  shares. With the kernel's autogroup that session is one scheduling group, weighing as much
  as one service under contention (see `bench.common.lower_priority`): niced further, an open
  loop would fall behind its schedule and hide the overload it measures. It records its own
  CPU use, and a figure with the generator near 100 % of a core is flagged;
- requests in flight are bounded (closed loop: a fixed number of workers; open loop: a cap),
  so it never queues thousands of sockets the services would have to accept;
- bodies, bearer tokens and headers are built before the clock starts, as raw HTTP/1.1
  bytes; the hot loop splices in a unique Idempotency-Key, writes the bytes on a keep-alive
  connection and reads the status and the `Location` header (a minimal client: httpx cost
  roughly ten times the CPU per request and was the bottleneck against the baseline).

Two modes: closed loop (N workers send back to back, for a duration or a count: throughput)
and open loop (a fixed schedule of `rate` requests per second, whatever the responses do:
latency without coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Literal
from urllib.parse import urlsplit

from bench.common import HARNESS_NICENESS
from bench.workload import PreparedReport

# (scheduled, sent, done, status, incident id or "") per request; times from time.time().
Sample = tuple[float, float, float, int, str]


@dataclass
class LoadPlan:
    url: str
    reports: list[PreparedReport]
    mode: Literal["closed", "open"] = "closed"
    concurrency: int = 32
    rate: float = 0.0
    count: int | None = None
    warmup: float = 0.0
    duration: float | None = None
    key_prefix: str = "bench"
    nice: int = HARNESS_NICENESS


@dataclass
class LoadResult:
    started: float
    finished: float
    samples: list[Sample]
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0

    @property
    def cpu_fraction(self) -> float:
        """Share of one core the generator used (near 1.0: it may have been the bottleneck)."""
        wall = self.finished - self.started
        return self.cpu_seconds / wall if wall > 0 else 0.0

    @property
    def seconds_behind_schedule(self) -> float:
        """How late the latest request was sent against its schedule (open loop)."""
        return max((s[1] - s[0] for s in self.samples), default=0.0)

    def accepted(self) -> list[Sample]:
        return [s for s in self.samples if s[3] in (200, 201)]

    def not_accepted_note(self) -> str | None:
        """How many reports were not accepted and why (HTTP status or client error), if any."""
        refused = len(self.samples) - len(self.accepted())
        if not refused:
            return None
        reasons = {**Counter(f"HTTP {s[3]}" for s in self.samples if s[3] not in (0, 200, 201)),
                   **self.errors}
        return f"{refused} report(s) were not accepted: {reasons}"


class LoadProcess:
    """Runs a plan in a child process; `started()` tells when its clock began."""

    def __init__(self, plan: LoadPlan) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(plan, child), daemon=True,
                                        name="bench-loadgen")
        self._process.start()
        child.close()
        self.pid = self._process.pid
        self.t0: float | None = None

    async def started(self) -> float:
        message = await asyncio.to_thread(self._parent.recv)
        if message[0] == "error":
            raise RuntimeError(f"load generator failed: {message[1]}")
        assert message[0] == "started"
        self.t0 = float(message[1])
        return self.t0

    async def result(self) -> LoadResult:
        if self.t0 is None:
            await self.started()
        message = await asyncio.to_thread(self._parent.recv)
        await asyncio.to_thread(self._process.join, 30)
        if message[0] == "error":
            raise RuntimeError(f"load generator failed: {message[1]}")
        result: LoadResult = message[1]
        return result

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()


async def run_load(plan: LoadPlan) -> LoadResult:
    process = LoadProcess(plan)
    try:
        return await process.result()
    finally:
        process.kill()


def _child_main(plan: LoadPlan, conn: Connection) -> None:
    with contextlib.suppress(OSError):
        os.nice(plan.nice)
    try:
        result = asyncio.run(_generate(plan, conn))
        conn.send(("done", result))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise
    finally:
        conn.close()


class Http1Pool:
    """A minimal HTTP/1.1 keep-alive client: a fraction of httpx's CPU per request, so the
    generator is not what limits the fastest target (the baseline). Each request is one
    pre-encoded byte string; it reads the status, the headers and a Content-Length or chunked
    body. Connections are reused; one per request in flight."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.path = parsed.path or "/"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def encode(self, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def request(self, raw: bytes) -> tuple[int, dict[str, str]]:
        """Send on an idle connection if there is one. The server closes connections idle
        longer than its keep-alive timeout (uvicorn: 5 s); a reused connection that ends
        before any answer is retried once on a new one, as HTTP clients do (safe here: every
        request carries an Idempotency-Key)."""
        if self._idle:
            reused = self._idle.pop()
            try:
                return await self._exchange(*reused, raw)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise
        return await self._exchange(*await asyncio.open_connection(self.host, self.port), raw)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        raw: bytes) -> tuple[int, dict[str, str]]:
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, headers

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _generate(plan: LoadPlan, conn: Connection) -> LoadResult:
    samples: list[Sample] = []
    errors: dict[str, int] = {}
    pool = Http1Pool(plan.url)
    reports = [pool.encode(r.body, r.headers) for r in plan.reports]
    marker = b"\r\n\r\n"

    async def send(index: int, scheduled: float) -> None:
        raw = reports[index % len(reports)]
        # The one per-request change: a unique Idempotency-Key, spliced into the headers.
        split = raw.index(marker)
        raw = raw[:split] + f"\r\nIdempotency-Key: {plan.key_prefix}-{index}".encode() + raw[split:]
        sent = time.time()
        try:
            status, headers = await pool.request(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
            samples.append((scheduled, sent, time.time(), 0, ""))
            return
        location = headers.get("location", "")
        samples.append((scheduled, sent, time.time(), status,
                        location.rsplit("/", 1)[-1] if location else ""))

    cpu_before = _cpu()
    t0 = time.time()
    conn.send(("started", t0))
    try:
        if plan.mode == "closed":
            await _closed_loop(plan, send, t0)
        else:
            await _open_loop(plan, send, t0)
    finally:
        pool.close()
    finished = time.time()
    return LoadResult(started=t0, finished=finished, samples=samples, errors=errors,
                      cpu_seconds=_cpu() - cpu_before)


async def _closed_loop(plan: LoadPlan, send: Any, t0: float) -> None:
    stop_at = t0 + plan.warmup + plan.duration if plan.duration is not None else None
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while True:
            if plan.count is not None and next_index >= plan.count:
                return
            now = time.time()
            if stop_at is not None and now >= stop_at:
                return
            index = next_index
            next_index += 1
            await send(index, now)

    await asyncio.gather(*(worker() for _ in range(plan.concurrency)))


async def _open_loop(plan: LoadPlan, send: Any, t0: float) -> None:
    """Request i is due at t0 + i/rate; a late response never delays the next request."""
    assert plan.rate > 0
    total = plan.count if plan.count is not None else int(plan.rate * (plan.duration or 0))
    in_flight = asyncio.Semaphore(plan.concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def bounded(index: int, scheduled: float) -> None:
        try:
            await send(index, scheduled)
        finally:
            in_flight.release()

    for index in range(total):
        scheduled = t0 + index / plan.rate
        delay = scheduled - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        task = asyncio.create_task(bounded(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
