"""Event correlation and the spam filter, with time passed in."""

from __future__ import annotations

from nodeprobe.model import Event, EventType
from nodeprobe.publish.events import (
    COMBINED_PREFIX,
    MESSAGE_LIMIT,
    Correlator,
    EventSettings,
    TokenBucket,
    truncate,
)

T0 = 1_800_000_000.0


def ev(at: float, reason: str = "DockerdHung", message: str = "dockerd did not answer") -> Event:
    return Event(EventType.WARNING, reason, message, at)


def test_defaults_match_client_go() -> None:
    s = EventSettings()
    assert (s.aggregate_window_s, s.similar_max, s.burst, s.refill_s) == (600.0, 10, 25, 300.0)
    assert s.namespace == "default"


def test_identical_events_within_the_window_fold_into_one_record() -> None:
    c = Correlator(EventSettings())
    first = c.add(ev(T0))
    first.written_count = first.count  # as if written
    again = c.add(ev(T0 + 30))
    assert again is first
    assert (again.count, again.first_at, again.last_at) == (2, T0, T0 + 30)
    assert c.pending() == [again]


def test_after_the_window_a_new_record_starts() -> None:
    c = Correlator(EventSettings())
    first = c.add(ev(T0))
    first.written_count = first.count
    later = c.add(ev(T0 + 601))
    assert later is not first and later.count == 1 and later.name is None


def test_a_pending_record_keeps_counting_past_the_window() -> None:
    """Throttled occurrences are not lost when the next token comes late."""
    c = Correlator(EventSettings())
    first = c.add(ev(T0))
    assert c.add(ev(T0 + 900)) is first and first.count == 2


def test_different_reasons_or_types_are_different_events() -> None:
    c = Correlator(EventSettings())
    a = c.add(ev(T0))
    b = c.add(ev(T0, reason="ContainerRuntimeIsAvailable"))
    d = c.add(Event(EventType.NORMAL, "DockerdHung", "dockerd did not answer", T0))
    assert len({id(a), id(b), id(d)}) == 3


def test_many_different_messages_for_one_reason_are_combined() -> None:
    c = Correlator(EventSettings(similar_max=10))
    recs = [c.add(ev(T0 + i, message=f"waited {i}s")) for i in range(14)]
    assert all(r.message.startswith("waited") for r in recs[:10])
    combined = recs[10:]
    assert all(r is combined[0] for r in combined)
    assert combined[0].count == 4
    assert combined[0].message == COMBINED_PREFIX + "waited 13s"


def test_memory_is_bounded() -> None:
    c = Correlator(EventSettings(max_records=50, similar_max=10**6))
    for i in range(500):
        rec = c.add(ev(T0 + i, message=f"m{i}"))
        rec.written_count = rec.count
    assert len(c) <= 50


def test_written_records_expire_after_the_window() -> None:
    c = Correlator(EventSettings())
    rec = c.add(ev(T0))
    rec.written_count = 1
    c.add(ev(T0 + 700, reason="Other"))
    assert len(c) == 1


def test_pending_is_oldest_change_first() -> None:
    c = Correlator(EventSettings())
    a = c.add(ev(T0, reason="A"))
    b = c.add(ev(T0 + 1, reason="B"))
    a.written_count = 1
    c.add(ev(T0 + 2, reason="A"))
    assert c.pending() == [b, a]


def test_token_bucket_burst_then_refill() -> None:
    tb = TokenBucket(burst=25, refill_s=300.0)
    assert sum(tb.take(T0) for _ in range(100)) == 25
    assert not tb.take(T0 + 299)
    assert tb.take(T0 + 300.5)
    assert not tb.take(T0 + 301)


def test_token_bucket_refill_is_capped_at_burst() -> None:
    tb = TokenBucket(burst=3, refill_s=1.0)
    assert sum(tb.take(T0) for _ in range(3)) == 3
    assert sum(tb.take(T0 + 1000) for _ in range(10)) == 3


def test_token_bucket_tolerates_a_clock_going_back() -> None:
    tb = TokenBucket(burst=1, refill_s=10.0)
    assert tb.take(T0)
    assert not tb.take(T0 - 100)
    assert not tb.take(T0 + 5)
    assert tb.take(T0 + 10)


def test_give_back_restores_a_token() -> None:
    tb = TokenBucket(burst=1, refill_s=300.0)
    assert tb.take(T0)
    tb.give_back()
    assert tb.take(T0)


def test_truncate_respects_the_byte_limit_on_a_character_boundary() -> None:
    assert truncate("short") == "short"
    long = "ä" * 600  # 1200 bytes
    cut = truncate(long)
    assert len(cut.encode()) <= MESSAGE_LIMIT and cut.endswith(" ...")
    assert truncate("x" * MESSAGE_LIMIT) == "x" * MESSAGE_LIMIT
