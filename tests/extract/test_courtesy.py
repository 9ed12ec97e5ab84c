"""The request gate the windows of a run share (etl.extract.courtesy), without a server."""

from __future__ import annotations

import threading

from etl.extract.courtesy import RequestGate


def _acquire_in_thread(gate: RequestGate) -> tuple[threading.Thread, threading.Event]:
    got = threading.Event()

    def take() -> None:
        gate.acquire()
        got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, got


def test_the_cap_holds_requests_until_a_slot_is_released() -> None:
    gate = RequestGate(2)
    first, second = gate.acquire(), gate.acquire()
    thread, got = _acquire_in_thread(gate)
    assert not got.wait(0.2)  # a third waits
    first.release()
    first.release()  # a second release of the same slot frees nothing more
    assert got.wait(5)
    thread.join()
    _, fourth = _acquire_in_thread(gate)
    assert not fourth.wait(0.2)
    second.release()
    assert fourth.wait(5)


def test_a_refusal_lowers_the_limit_below_what_was_in_flight_for_good() -> None:
    gate = RequestGate(4)
    slots = [gate.acquire() for _ in range(4)]
    gate.refused(0.0)  # one of the four was refused: the server took three
    assert gate.allowed == 3
    slots.pop().release()
    gate.refused(0.0)  # again, with three in flight
    assert gate.allowed == 2
    for slot in slots:
        slot.release()
    assert gate.allowed == 2  # not raised again by requests that went through
    held = [gate.acquire(), gate.acquire()]
    _, got = _acquire_in_thread(gate)
    assert not got.wait(0.2)  # a third waits: two is the limit now
    held[0].release()
    assert got.wait(5)


def test_a_refusal_pauses_every_request_for_its_retry_after() -> None:
    gate = RequestGate(None)
    gate.acquire().release()
    gate.refused(0.5)
    thread, got = _acquire_in_thread(gate)
    assert not got.wait(0.2)  # paused, though nothing is in flight
    assert got.wait(5)
    thread.join()
    assert gate.allowed == 1  # without a cap, one fewer than the one in flight, at least one


def test_a_retry_after_on_an_error_pauses_every_request_and_keeps_the_limit() -> None:
    gate = RequestGate(3)
    gate.acquire().release()
    gate.asked_to_wait(0.5)  # a 503 with Retry-After: 0.5
    thread, got = _acquire_in_thread(gate)
    assert not got.wait(0.2)  # paused, though nothing is in flight
    assert got.wait(5)
    thread.join()
    assert gate.allowed == 3  # a server in trouble is not a server at capacity


def test_a_retry_after_beyond_max_pause_pauses_no_one() -> None:
    gate = RequestGate(None, max_pause=1.0)
    gate.asked_to_wait(3600)  # that window fails at once (retry.max_wait); the others go on
    _, got = _acquire_in_thread(gate)
    assert got.wait(5)
