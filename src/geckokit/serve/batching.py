"""Dynamic micro-batching: concurrent requests share one encode call.

A transformer encoder on a CPU is far more efficient on one batch of 32 texts than on 32
calls of one text, but HTTP clients send what they have. :class:`MicroBatcher` keeps a queue
of pending texts; one worker takes the oldest, gathers more until the batch holds
``max_batch_size`` texts or ``max_wait_ms`` have passed since that oldest was queued, runs the
encode function in a worker thread (the event loop keeps accepting requests meanwhile) and
hands each request its own slice of the results. Texts that arrive while a batch is being
encoded wait in the queue and form the next batch, so under load batches fill by themselves
and the wait bound only costs latency when the server is nearly idle. With ``workers`` above
1, that many batches are encoded at the same time on as many threads; one worker gathers at
a time, so batches still fill, and a batch that took everything queued while other workers
sit idle is shared out evenly among them (clients that wait for their answers before sending
again then fall into groups whose HTTP work overlaps the others' encoding).

A request larger than ``max_batch_size`` is split into chunks that queue like any other, so
one huge request does not hold back small ones for the whole of its encode time. When an
encode call fails for a batch shared by several requests, each request's chunk is encoded
again on its own, so that only the request whose text failed gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Chunk:
    texts: list[str]
    future: asyncio.Future[list[Any]]
    queued_at: float  # event-loop time


@dataclass
class BatchStats:
    """Counters for /health and tests: encode calls, texts encoded, texts waiting."""

    batches: int = 0
    inputs: int = 0
    queued: int = 0
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000), repr=False)


class MicroBatcher(Generic[T]):
    """Batches texts from concurrent :meth:`submit` calls into calls of ``encode``.

    ``encode(texts)`` runs on one of ``workers`` threads and returns one result per text, in
    order; with several workers it must be safe to call from several threads at once.
    Use as ``async with MicroBatcher(...) as batcher`` (or :meth:`start` / :meth:`close`)
    inside a running event loop.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], Sequence[T]],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
        self.encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.workers = workers
        self.stats = BatchStats()
        self._pending: deque[_Chunk] = deque()
        self._inflight: dict[int, list[_Chunk]] = {}
        self._wakeup: asyncio.Event | None = None
        self._gathering: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = workers  # workers not encoding
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        if self._tasks:
            return
        self._wakeup = asyncio.Event()
        self._gathering = asyncio.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="geckokit-encode"
        )
        self._tasks = [
            asyncio.create_task(self._run(slot), name=f"geckokit-micro-batcher-{slot}")
            for slot in range(self.workers)
        ]

    async def close(self) -> None:
        """Stop the workers; requests still waiting fail with ``RuntimeError``."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        stranded = [c for chunks in self._inflight.values() for c in chunks]
        for chunk in [*stranded, *self._pending]:
            if not chunk.future.done():
                chunk.future.set_exception(RuntimeError("the server is shutting down"))
        self._inflight, self._pending = {}, deque()
        self.stats.queued = 0
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)  # lets a running encode end

    async def __aenter__(self) -> MicroBatcher[T]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run_in_worker(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on an encode thread (e.g. a warm-up)."""
        if self._executor is None:
            raise RuntimeError("the batcher is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def submit(self, texts: Sequence[str]) -> list[T]:
        """Encode ``texts`` together with whatever else is queued; one result per text."""
        if not self._tasks or self._wakeup is None:
            raise RuntimeError("the batcher is not started")
        if all(task.done() for task in self._tasks):
            raise RuntimeError("the batch workers have stopped")
        loop = asyncio.get_running_loop()
        chunks = [
            _Chunk(list(texts[i : i + self.max_batch_size]), loop.create_future(), loop.time())
            for i in range(0, len(texts), self.max_batch_size)
        ]
        self._pending.extend(chunks)
        self.stats.queued += len(texts)
        self._wakeup.set()
        parts = await asyncio.gather(*(c.future for c in chunks))
        return [result for part in parts for result in part]

    async def _gather(self, slot: int) -> list[_Chunk]:
        """Wait for the first chunk, then add more until full or ``max_wait_ms`` after the
        first chunk was queued; then leave other idle workers their share."""
        assert self._wakeup is not None  # set by start()
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = self._inflight[slot] = [self._pending.popleft()]  # close() fails these
        size = len(batch[0].texts)
        deadline = batch[0].queued_at + self.max_wait
        while size < self.max_batch_size:
            if self._pending:
                if size + len(self._pending[0].texts) > self.max_batch_size:
                    break  # the next chunk leads the next batch
                chunk = self._pending.popleft()
                batch.append(chunk)
                size += len(chunk.texts)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return self._share(batch)

    def _share(self, batch: list[_Chunk]) -> list[_Chunk]:
        """Keep this worker's even share of ``batch`` when other workers are idle and the
        batch took all that was queued, and put the rest back at the head of the queue.

        Many clients that each wait for their answer before sending again arrive together;
        in one batch their next requests would also arrive together, while the encode
        threads sit idle. Split across idle workers, one batch is encoded while the answers
        of another go out and its next requests come in.
        """
        idle = self._idle - 1  # the others waiting to gather
        if idle <= 0 or len(batch) < 2 or self._pending:
            return batch  # nobody to share with, nothing to split, or more work queued anyway
        size = sum(len(c.texts) for c in batch)
        share = -(-size // (idle + 1))  # ceil
        kept: list[_Chunk] = []
        taken = 0
        for chunk in batch:
            if kept and taken >= share:
                break
            kept.append(chunk)
            taken += len(chunk.texts)
        self._pending.extendleft(reversed(batch[len(kept) :]))
        assert self._wakeup is not None  # set by start()
        self._wakeup.set()
        return kept

    async def _run(self, slot: int) -> None:
        assert self._gathering is not None  # set by start()
        loop = asyncio.get_running_loop()
        while True:
            async with self._gathering:  # one worker gathers at a time, so batches fill
                batch = await self._gather(slot)
                self._idle -= 1
            try:
                await self._encode_batch(slot, batch, loop)
            finally:
                self._idle += 1

    async def _encode_batch(
        self, slot: int, batch: list[_Chunk], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.stats.queued -= sum(len(c.texts) for c in batch)
        batch = [c for c in batch if not c.future.done()]  # callers that went away
        self._inflight[slot] = batch  # close() fails these
        if batch and not await self._encode_chunks(batch, loop, quiet=len(batch) > 1):
            # One request's text may be what failed (a tokenizer refusing it, say): encode
            # each chunk on its own, so that the error reaches only the request it belongs
            # to, and not the others that happened to share its batch.
            log.warning(
                "encoding a batch of %d requests failed; encoding each on its own", len(batch)
            )
            for chunk in batch:
                if not chunk.future.done():
                    await self._encode_chunks([chunk], loop, quiet=False)
        self._inflight.pop(slot, None)

    async def _encode_chunks(
        self, chunks: list[_Chunk], loop: asyncio.AbstractEventLoop, *, quiet: bool
    ) -> bool:
        """Encode the texts of ``chunks`` in one call and hand each chunk its results. False
        when the call failed: each chunk then gets the exception, unless ``quiet``."""
        texts = [t for c in chunks for t in c.texts]
        try:
            results = await loop.run_in_executor(self._executor, self.encode, texts)
            if len(results) != len(texts):
                raise RuntimeError(f"encode returned {len(results)} results for {len(texts)} texts")
        except Exception as exc:
            if quiet:
                return False
            log.exception("encoding a batch of %d texts failed", len(texts))
            for chunk in chunks:
                if not chunk.future.done():
                    chunk.future.set_exception(exc)
            return False
        self.stats.batches += 1
        self.stats.inputs += len(texts)
        self.stats.sizes.append(len(texts))
        start = 0
        for chunk in chunks:
            end = start + len(chunk.texts)
            if not chunk.future.done():
                chunk.future.set_result(list(results[start:end]))
            start = end
        return True
