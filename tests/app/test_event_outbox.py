"""The worker's event outbox: one wake-up per batch, the order kept, at most MAX_BATCH events a turn."""

from __future__ import annotations

import threading

from app.event_outbox import MAX_BATCH, EventOutbox


def test_one_wake_up_until_the_outbox_is_emptied_and_the_order_is_kept():
    wakes = []
    box = EventOutbox(lambda: wakes.append(1))
    for i in range(MAX_BATCH + 10):
        box.put(7, i)
    assert len(wakes) == 1  # a flood posts one wake-up, not one per event
    batch, more = box.take()
    assert [e for _, e in batch] == list(range(MAX_BATCH)) and more
    box.put(7, "late")
    assert len(wakes) == 1  # still pending: the caller takes again
    batch, more = box.take()
    assert [e for _, e in batch] == [*range(MAX_BATCH, MAX_BATCH + 10), "late"] and not more
    box.put(8, "next")
    assert len(wakes) == 2 and box.take(None) == ([(8, "next")], False)


def test_events_put_from_another_thread_all_arrive_in_order():
    box = EventOutbox(lambda: None)
    n = 20_000
    writer = threading.Thread(target=lambda: [box.put(1, i) for i in range(n)])
    writer.start()
    seen: list[object] = []
    while writer.is_alive() or len(seen) < n:
        batch, _ = box.take()
        seen.extend(e for _, e in batch)
    writer.join()
    assert seen == list(range(n))
