"""The model runner: batching, sharing identical requests, and leaving the line cleanly."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from headscope.server.runner import Busy, ModelRunner, Pending, TooManyJobs


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
        async with runner.turns.turn():  # the model is busy: everything below waits together
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
        async with runner.turns.turn():
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
        async with runner.turns.turn():
            first = asyncio.create_task(runner.analyze(1, pending(minilm, "a")))
            second = asyncio.create_task(runner.analyze(2, pending(minilm, "b")))
            await asyncio.sleep(0.02)
            with pytest.raises(Busy):
                await runner.analyze(3, pending(minilm, "c"))
        assert await first == ["[CLS]", "a", "[SEP]"] and await second == ["[CLS]", "b", "[SEP]"]

    run(main)


def test_a_text_is_counted_in_line_and_one_too_long_leaves_it_cleanly(minilm):
    from headscope.models.analysis import TooManyTokens

    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    long = "word " * 600  # 602 tokens

    async def main():
        with pytest.raises(TooManyTokens, match="602 tokens"):
            await runner.analyze("long", pending(minilm, long))
        assert runner.pending == [] and runner.shared == {} and runner.admitted_count == 0
        return await runner.analyze("cut", pending(minilm, long, truncate=True))

    tokens = run(main)
    assert len(tokens) == 512 and tokens[-1] == "[SEP]"


def test_a_newcomer_goes_ahead_of_clients_just_served_and_batches_are_capped(minilm):
    """Eight clients answered a moment ago wait in line; a client never answered joins after them and
    runs first (headscope/server/runner.py: the newcomer's lead); no batch takes more than max_batch_size."""
    runner = ModelRunner(max_waiting=64, max_batch_tokens=1024, max_batch_size=4, newcomer_lead_s=10.0)
    calls = []
    original = minilm.analyze_batch

    def counting(texts, truncate=False, new_tokens=None):
        calls.append(list(texts))
        return original(texts, truncate, new_tokens)

    regulars = [("127.0.0.1", 40000 + k) for k in range(8)]

    async def main():
        runner.answered_at.update(dict.fromkeys(regulars, time.monotonic()))
        async with runner.turns.turn():  # the model is busy: everyone below waits
            tasks = [asyncio.create_task(runner.analyze(k, Pending(minilm, f"regular {k}", False, None,
                                                                   lambda a: a.tokens, client)))
                     for k, client in enumerate(regulars)]
            await asyncio.sleep(0)  # each task takes its place in line
            tasks.append(asyncio.create_task(runner.analyze("new", Pending(minilm, "newcomer", False, None,
                                                                           lambda a: a.tokens, ("127.0.0.1", 50000)))))
            await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    minilm.analyze_batch = counting
    try:
        results = run(main)
    finally:
        del minilm.analyze_batch
    assert calls == [["newcomer", "regular 0", "regular 1", "regular 2"],
                     ["regular 3", "regular 4", "regular 5", "regular 6"], ["regular 7"]]
    assert results[-1] == ["[CLS]", "newcomer", "[SEP]"] and results[0][1] == "regular"
    assert set(runner.answered_at) == {*regulars, ("127.0.0.1", 50000), ("address", "127.0.0.1")}


def test_a_newcomer_from_a_new_address_goes_ahead_of_new_connections_from_an_address_just_served(monkeypatch):
    """Clients that open a new connection per request are each a new connection, but their address was just
    answered: a newcomer from another address goes first, and the lead stays bounded (2 x newcomer_lead_s)."""
    runner = ModelRunner(max_waiting=8, max_batch_tokens=1024, newcomer_lead_s=10.0)
    now = 1000.0
    monkeypatch.setattr(time, "monotonic", lambda: now)
    runner.answered_at.update({("10.0.0.1", 40000): now - 1, ("address", "10.0.0.1"): now - 1})
    assert runner.rank(("10.0.0.1", 40000)) == now  # its connection and address were just answered
    assert runner.rank(("10.0.0.1", 40001)) == now - 10  # a new connection of that address
    assert runner.rank(("10.0.0.2", 50000)) == now - 20  # a newcomer: new connection, new address
    now += 11  # answered long ago: a newcomer again
    assert runner.rank(("10.0.0.1", 40000)) == now - 20


def test_the_lead_is_bounded_so_nobody_starves(monkeypatch):
    """A place in line is the arrival time, less the lead for a client not answered within the lead: so a
    request is never passed by one that arrived more than newcomer_lead_s after it."""
    runner = ModelRunner(max_waiting=8, max_batch_tokens=1024, newcomer_lead_s=10.0)
    now = 1000.0
    monkeypatch.setattr(time, "monotonic", lambda: now)
    runner.answered_at.update({"just served": now - 1, "served long ago": now - 11})
    assert runner.rank("never served") == runner.rank("served long ago") == now - 10
    assert runner.rank("just served") == now
    assert runner.rank(None) == now  # an unknown client gets no lead


def test_each_answer_is_released_once_built_not_after_the_whole_batch(minilm):
    runner = ModelRunner(max_waiting=8, max_batch_tokens=1024)
    first_released = threading.Event()

    def build_second(analysis):
        assert first_released.wait(60), "the first answer was held until the whole batch was built"
        return analysis.tokens

    async def main():
        async with runner.turns.turn():
            first = asyncio.create_task(runner.analyze(1, pending(minilm, "first")))
            second = asyncio.create_task(runner.analyze(2, Pending(minilm, "second", False, None, build_second)))
            await asyncio.sleep(0)
        assert await first == ["[CLS]", "first", "[SEP]"]  # while the second answer is still being built
        first_released.set()
        return await second

    assert run(main) == ["[CLS]", "second", "[SEP]"]


# ---- turns and long jobs -------------------------------------------------------------------------------------------


def test_short_jobs_go_before_the_next_step_of_a_long_job():
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    order = []

    async def main():
        async with runner.turns.turn():  # the model is busy; then, in this order of arrival:
            steps = [asyncio.create_task(runner.step(order.append, f"step {i}")) for i in range(3)]
            await asyncio.sleep(0.02)
            shorts = [asyncio.create_task(runner.call(order.append, f"short {i}")) for i in range(2)]
            await asyncio.sleep(0.02)
        await asyncio.gather(*steps, *shorts)

    run(main)
    assert order == ["short 0", "short 1", "step 0", "step 1", "step 2"]  # short ones first, each in arrival order
    assert not runner.turns.busy and not runner.turns.waiting


def test_a_job_cancelled_while_waiting_for_its_turn_passes_it_on():
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024)
    order = []

    async def main():
        async with runner.turns.turn():
            gone = asyncio.create_task(runner.call(order.append, "gone"))
            kept = asyncio.create_task(runner.step(order.append, "kept"))
            await asyncio.sleep(0.02)
            gone.cancel()
        await asyncio.wait_for(kept, 5)
        with pytest.raises(asyncio.CancelledError):
            await gone

    run(main)
    assert order == ["kept"]
    assert not runner.turns.busy and not runner.turns.waiting


def test_a_client_address_holds_at_most_its_long_jobs():
    runner = ModelRunner(max_waiting=16, max_batch_tokens=1024, long_jobs_per_client=2)

    async def main():
        async with runner.long_job("10.0.0.1"), runner.long_job("10.0.0.1"):
            with pytest.raises(TooManyJobs, match="long_jobs_per_client") as refused:
                async with runner.long_job("10.0.0.1"):
                    pass
            assert refused.value.limit == 2
            async with runner.long_job("10.0.0.2"):  # another address is not held back
                assert runner.long_jobs == {"10.0.0.1": 2, "10.0.0.2": 1}
        async with runner.long_job("10.0.0.1"):  # once they finished, the address may start again
            pass
        return dict(runner.long_jobs), runner.admitted_count

    assert run(main) == ({}, 0)


def test_the_model_tidies_its_memory_only_once_nobody_waits():
    """on_idle (the runner's: give freed C heap pages back) runs when the last waiting job's turn ends."""
    from headscope.server.runner import Turns

    idle = []
    turns = Turns(on_idle=lambda: idle.append(len(turns.waiting)))

    async def job(log, name):
        async with turns.turn():
            log.append(name)

    async def main():
        log = []
        async with turns.turn():
            tasks = [asyncio.create_task(job(log, n)) for n in ("a", "b")]
            await asyncio.sleep(0.02)
            assert idle == []
        await asyncio.gather(*tasks)
        return log

    assert run(main) == ["a", "b"]
    assert idle == [0]  # once, after the last of the three turns, with nobody waiting
