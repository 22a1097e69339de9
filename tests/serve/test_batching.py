"""The micro-batcher with a fake encode function: grouping, order, limits, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from geckokit.serve.batching import MicroBatcher


class FakeEncode:
    """Records each call's texts; returns each text upper-cased, after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"cannot encode {self.fail_on!r}")
        return [t.upper() for t in texts]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def timed_singles(encode: FakeEncode, texts: str, **settings: Any) -> tuple[list[list[str]], float]:
    """Submit each character of ``texts`` as its own concurrent request; the results and
    the seconds until all were answered."""

    async def main() -> tuple[list[list[str]], float]:
        async with MicroBatcher(encode, **settings) as batcher:
            t0 = time.perf_counter()
            out = await asyncio.gather(*(batcher.submit([t]) for t in texts))
            return out, time.perf_counter() - t0

    return run(main())  # type: ignore[no-any-return]


def test_concurrent_requests_share_one_call_and_get_their_own_results() -> None:
    encode = FakeEncode()

    async def main() -> list[list[str]]:
        async with MicroBatcher(encode, max_batch_size=64, max_wait_ms=50) as batcher:
            return await asyncio.gather(*(batcher.submit([f"t{i}", f"u{i}"]) for i in range(10)))

    results = run(main())
    assert results == [[f"T{i}", f"U{i}"] for i in range(10)]
    assert len(encode.calls) == 1 and len(encode.calls[0]) == 20
    assert all(name.startswith("geckokit-encode") for name in encode.threads)


def test_batches_hold_at_most_max_batch_size_and_big_requests_are_split() -> None:
    encode = FakeEncode()

    async def main() -> tuple[list[str], list[list[str]]]:
        async with MicroBatcher(encode, max_batch_size=4, max_wait_ms=20) as batcher:
            big = batcher.submit([f"b{i}" for i in range(10)])
            small = [batcher.submit([f"s{i}"]) for i in range(3)]
            out = await asyncio.gather(big, *small)
            return out[0], list(out[1:])

    big, small = run(main())
    assert big == [f"B{i}" for i in range(10)]
    assert small == [["S0"], ["S1"], ["S2"]]
    assert all(len(call) <= 4 for call in encode.calls)
    # chunks of the big request (4, 4, 2) keep their order; the 2-text tail shares a batch
    assert encode.calls == [["b0", "b1", "b2", "b3"], ["b4", "b5", "b6", "b7"], ["b8", "b9", "s0", "s1"], ["s2"]]  # fmt: skip


def test_texts_arriving_during_an_encode_form_the_next_batch() -> None:
    encode = FakeEncode(delay=0.2)

    async def main() -> None:
        async with MicroBatcher(encode, max_batch_size=64, max_wait_ms=0) as batcher:
            first = asyncio.create_task(batcher.submit(["a"]))
            await asyncio.sleep(0.05)  # "a" is being encoded now
            rest = [asyncio.create_task(batcher.submit([t])) for t in "bcd"]
            await asyncio.sleep(0.01)
            assert batcher.stats.queued == 3
            await asyncio.gather(first, *rest)
            assert batcher.stats.batches == 2 and batcher.stats.inputs == 4
            assert list(batcher.stats.sizes) == [1, 3]

    run(main())
    assert encode.calls == [["a"], ["b", "c", "d"]]


def test_the_wait_bound_limits_the_latency_of_a_lone_request() -> None:
    encode = FakeEncode()

    async def main() -> float:
        async with MicroBatcher(encode, max_batch_size=64, max_wait_ms=30) as batcher:
            t0 = time.perf_counter()
            await batcher.submit(["alone"])
            return time.perf_counter() - t0

    seconds = run(main())
    assert 0.025 <= seconds < 0.5
    assert encode.calls == [["alone"]]


def test_a_failed_encode_fails_only_the_request_whose_text_failed() -> None:
    encode = FakeEncode(fail_on="bad")

    async def main() -> tuple[list[object], list[str]]:
        async with MicroBatcher(encode, max_batch_size=64, max_wait_ms=20) as batcher:
            first = await asyncio.gather(
                batcher.submit(["ok"]),
                batcher.submit(["bad", "fine"]),
                batcher.submit(["also ok"]),
                return_exceptions=True,
            )
            after = await batcher.submit(["still works"])
            return first, after

    first, after = run(main())
    assert first[0] == ["OK"] and first[2] == ["ALSO OK"]
    assert isinstance(first[1], RuntimeError) and "cannot encode 'bad'" in str(first[1])
    assert after == ["STILL WORKS"]
    # the shared batch failed, then each request was encoded on its own
    assert encode.calls[:4] == [
        ["ok", "bad", "fine", "also ok"],
        ["ok"],
        ["bad", "fine"],
        ["also ok"],
    ]


def test_encode_must_return_one_result_per_text() -> None:
    async def main() -> None:
        async with MicroBatcher(lambda texts: texts[:-1], max_wait_ms=0) as batcher:
            await batcher.submit(["a", "b"])

    with pytest.raises(RuntimeError, match="1 results for 2 texts"):
        run(main())


def test_a_cancelled_request_is_skipped_and_close_fails_the_waiting_ones() -> None:
    encode = FakeEncode(delay=0.2)

    async def main() -> None:
        batcher = MicroBatcher(encode, max_batch_size=64, max_wait_ms=0)
        await batcher.start()
        busy = asyncio.create_task(batcher.submit(["busy"]))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher.submit(["gone"]))
        waiting = asyncio.create_task(batcher.submit(["waiting"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert await busy == ["BUSY"]
        await asyncio.sleep(0.25)  # "waiting" is encoded alone; "gone" was skipped
        assert await waiting == ["WAITING"]
        late = asyncio.create_task(batcher.submit(["late"]))
        await asyncio.sleep(0.05)  # "late" is in the encoder now
        await batcher.close()
        with pytest.raises(RuntimeError, match="shutting down"):
            await late

    run(main())
    assert encode.calls == [["busy"], ["waiting"], ["late"]]


def test_several_workers_encode_batches_at_the_same_time() -> None:
    encode = FakeEncode(delay=0.3)
    results, seconds = timed_singles(encode, "abcd", max_batch_size=2, max_wait_ms=0, workers=2)
    assert results == [["A"], ["B"], ["C"], ["D"]]
    assert sorted(map(sorted, encode.calls)) == [["a", "b"], ["c", "d"]]
    assert len(encode.threads) == 2 and seconds < 0.55  # two batches of 0.3 s overlapped


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        MicroBatcher(FakeEncode(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms must be 0 or more"):
        MicroBatcher(FakeEncode(), max_wait_ms=-1)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        MicroBatcher(FakeEncode(), workers=0)

    async def not_started() -> None:
        await MicroBatcher(FakeEncode()).submit(["a"])

    with pytest.raises(RuntimeError, match="not started"):
        run(not_started())


def test_concurrent_requests_are_split_evenly_across_idle_workers() -> None:
    """Requests that arrive together are not all taken by one worker while another idles:
    each idle worker gets an even share, and the shares are encoded at the same time."""
    encode = FakeEncode(delay=0.3)
    results, seconds = timed_singles(encode, "abcdef", max_batch_size=64, max_wait_ms=20, workers=2)
    assert results == [[t.upper()] for t in "abcdef"]
    assert sorted(map(sorted, encode.calls)) == [["a", "b", "c"], ["d", "e", "f"]]
    assert len(encode.threads) == 2 and seconds < 0.55  # the two halves overlapped


def test_one_worker_takes_everything_that_is_queued() -> None:
    encode = FakeEncode()
    timed_singles(encode, "abcdef", max_batch_size=64, max_wait_ms=20, workers=1)
    assert encode.calls == [list("abcdef")]
