import json

from serve.live import CLIENT_QUEUE, Subscriber, TickHub


def _tick(asset: str, price: float) -> str:
    return json.dumps({"asset_id": asset, "price": price})


def test_ticks_reach_only_subscribers_of_their_asset() -> None:
    hub = TickHub("redis://unused")
    gold, treasury = Subscriber(), Subscriber()
    hub.subscribe(gold, ["paxg", "xaut"])
    hub.subscribe(treasury, ["buidl"])
    hub.dispatch(_tick("paxg", 1.0))
    hub.dispatch(_tick("buidl", 2.0))
    hub.dispatch("not json")
    assert [json.loads(gold.queue.get_nowait())["price"] for _ in range(gold.queue.qsize())] == [1.0]
    assert treasury.queue.qsize() == 1
    hub.unsubscribe(gold, ["paxg"])
    hub.dispatch(_tick("paxg", 3.0))
    assert gold.queue.empty()
    assert hub.clients == 2
    hub.unsubscribe(gold)
    assert hub.clients == 1


def test_a_slow_client_loses_its_oldest_ticks_not_the_others() -> None:
    hub = TickHub("redis://unused")
    slow, fast = Subscriber(), Subscriber()
    hub.subscribe(slow, ["paxg"])
    hub.subscribe(fast, ["paxg"])
    for i in range(CLIENT_QUEUE + 10):
        hub.dispatch(_tick("paxg", float(i)))
        fast.queue.get_nowait()  # the fast client keeps up
    assert slow.dropped == 10
    assert json.loads(slow.queue.get_nowait())["price"] == 10.0
    assert fast.dropped == 0
