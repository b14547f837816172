"""Which parked request takes a free slot."""

from __future__ import annotations

from callstream.gateway.pull._fair import FairShare, slots_per_host


def test_a_host_at_its_share_lets_another_hosts_request_go_first() -> None:
    fair: FairShare[str] = FairShare(per_host=1, lookahead=4)
    fair.park("fathom", "f1")
    assert fair.pick(exhausted=False) == ("fathom", "f1")
    fair.park("fathom", "f2")
    assert fair.pick(exhausted=False) is None  # fathom holds its share: look further
    fair.park("gong", "g1")
    assert fair.pick(exhausted=False) == ("gong", "g1")
    assert fair.pick(exhausted=False) is None
    fair.done("fathom")
    assert fair.pick(exhausted=False) == ("fathom", "f2")  # parked, it goes first when fathom may


def test_a_free_slot_never_idles() -> None:
    fair: FairShare[str] = FairShare(per_host=1, lookahead=2)
    fair.park("fathom", "f1")
    fair.pick(exhausted=False)
    fair.park("fathom", "f2")
    assert fair.pick(exhausted=True) == ("fathom", "f2")  # nothing else waits
    fair.park("fathom", "f3")
    fair.park("fathom", "f4")
    assert fair.full
    assert fair.pick(exhausted=False) == ("fathom", "f3")  # every parked one is of a busy host
    assert fair.running["fathom"] == 3
    assert fair.drain() == ["f4"]
    for _ in range(3):
        fair.done("fathom")
    assert not fair.running


def test_the_share_defaults_to_all_slots_but_one() -> None:
    assert slots_per_host(4, 0) == 3
    assert slots_per_host(1, 0) == 1
    assert slots_per_host(4, 2) == 2
    assert slots_per_host(4, 9) == 4


def test_a_failing_host_gets_one_slot_and_its_parked_requests_are_given_back_first() -> None:
    failing = {"fathom"}
    fair: FairShare[str] = FairShare(per_host=3, lookahead=2, suspect=lambda host: host in failing)
    fair.park("fathom", "f1")
    assert fair.pick(exhausted=False) == ("fathom", "f1")
    fair.park("fathom", "f2")
    assert fair.pick(exhausted=False) is None  # one slot while it fails, though its share is 3
    assert fair.spill() is None  # parking is not full: look further first
    fair.park("fathom", "f3")
    assert fair.spill() == "f2"  # full of a failing host's requests: give the oldest back
    fair.park("gong", "g1")
    assert fair.pick(exhausted=False) == ("gong", "g1")
    failing.clear()
    assert fair.pick(exhausted=False) == ("fathom", "f3")  # answering again: its share is back


def test_an_integration_at_its_share_lets_another_integrations_request_of_the_same_host_go_first() -> None:
    """The fairness key is the integration: a tenant's second run waits while another tenant's
    request of the same (healthy) host may go."""
    fair: FairShare[str] = FairShare(per_host=3, lookahead=4)
    fair.park("fathom", "a-backfill", key="tenant-a")
    assert fair.pick(exhausted=False) == ("fathom", "a-backfill")
    fair.park("fathom", "a-latest", key="tenant-a")
    fair.park("fathom", "b-latest", key="tenant-b")
    assert fair.pick(exhausted=False) == ("fathom", "b-latest")
    assert fair.pick(exhausted=False) is None  # tenant a holds its share
    assert fair.pick(exhausted=True) == ("fathom", "a-latest")  # nothing else waits: a slot never idles
    fair.done("fathom", "a-backfill")
    fair.done("fathom", "a-latest")
    fair.done("fathom", "b-latest")
    assert not fair.running
    assert not fair.by_key
    assert not fair.keys


def test_a_failing_host_keeps_one_slot_whatever_its_integrations() -> None:
    fair: FairShare[str] = FairShare(per_host=3, lookahead=4, suspect=lambda host: host == "dead")
    fair.park("dead", "d1", key="tenant-a")
    fair.park("dead", "d2", key="tenant-b")
    assert fair.pick(exhausted=False) == ("dead", "d1")
    assert fair.pick(exhausted=False) is None  # another tenant, but the host is failing


def test_parked_requests_can_be_taken_back() -> None:
    fair: FairShare[str] = FairShare(per_host=3, lookahead=4)
    fair.park("fathom", "old", key="tenant-a")
    fair.park("fathom", "new", key="tenant-b")
    assert fair.take_back(lambda item: item != "old") == ["old"]
    assert [item for _, item in fair.parked] == ["new"]
