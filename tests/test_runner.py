"""The model runner: batching, sharing identical requests, and leaving the line cleanly."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.runner import Busy, ModelRunner, Pending


def run(main):
    """asyncio.run in a thread of its own: Playwright's sync API may hold this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def pending(model, text, truncate=False):
    return Pending(model, text, truncate, None, build=lambda a: a.tokens)


def test_waiting_requests_run_as_one_batch_and_identical_ones_share(minilm):
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    calls = []
    original = minilm.analyze_batch

    def counting(texts, truncate=False, new_tokens=None):
        calls.append(list(texts))
        return original(texts, truncate, new_tokens)

    async def main():
        async with runner.lock:  # the model is busy: everything below waits together
            tasks = [asyncio.create_task(runner.analyze(("k", t), pending(minilm, t)))
                     for t in ["one text", "another text here", "one text"]]
            await asyncio.sleep(0.05)
        return await asyncio.gather(*tasks)

    minilm.analyze_batch = counting
    try:
        results = run(main)
    finally:
        del minilm.analyze_batch
    assert calls == [["one text", "another text here"]]  # one forward pass; the repeat shared it
    assert results[0] == results[2] == ["[CLS]", "one", "text", "[SEP]"]
    assert results[1][1] == "another"


def test_a_request_cancelled_while_waiting_releases_those_sharing_it(minilm):
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)

    async def main():
        async with runner.lock:
            owner = asyncio.create_task(runner.analyze("same", pending(minilm, "shared text")))
            await asyncio.sleep(0.02)
            sharer = asyncio.create_task(runner.analyze("same", pending(minilm, "shared text")))
            await asyncio.sleep(0.02)
            owner.cancel()
            with pytest.raises(RuntimeError, match="cancelled"):
                await asyncio.wait_for(sharer, 5)
        assert runner.pending == [] and runner.shared == {} and runner.admitted_count == 0

    run(main)


def test_the_line_is_bounded(minilm):
    runner = ModelRunner(max_waiting=1, max_batch_tokens=1024)

    async def main():
        async with runner.lock:
            first = asyncio.create_task(runner.analyze(1, pending(minilm, "a")))
            second = asyncio.create_task(runner.analyze(2, pending(minilm, "b")))
            await asyncio.sleep(0.02)
            with pytest.raises(Busy):
                await runner.analyze(3, pending(minilm, "c"))
        assert await first == ["[CLS]", "a", "[SEP]"] and await second == ["[CLS]", "b", "[SEP]"]

    run(main)


def test_a_text_is_counted_in_line_and_one_too_long_leaves_it_cleanly(minilm):
    from model.analysis import TooManyTokens

    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    long = "word " * 600  # 602 tokens

    async def main():
        with pytest.raises(TooManyTokens, match="602 tokens"):
            await runner.analyze("long", pending(minilm, long))
        assert runner.pending == [] and runner.shared == {} and runner.admitted_count == 0
        return await runner.analyze("cut", pending(minilm, long, truncate=True))

    tokens = run(main)
    assert len(tokens) == 512 and tokens[-1] == "[SEP]"
