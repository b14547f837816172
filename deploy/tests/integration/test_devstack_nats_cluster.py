"""``./dev up --nats-cluster 3``: three NATS servers routed on loopback whose streams take three
replicas as soon as the stack's start returns: on a fresh store, and again on a restart over the
kept store, when the meta and stream leaders take seconds to be elected (``setup`` used to time out
there). ``./dev down`` leaves no server running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from callstream.contracts import STREAMS
from callstream.devstack import Stack
from callstream.runtime import ensure_all


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _declare_and_check(urls: str) -> None:
    nc = await nats.connect(urls.split(","), connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        await ensure_all(js, replicas=3)  # what each service's `setup` does
        for spec in STREAMS:
            info = await js.stream_info(spec.name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            assert info.cluster.leader
            assert len(info.cluster.replicas or []) == 2, f"{spec.name} is not on all three servers"
    finally:
        await nc.close()


@pytest.mark.timeout(180)
def test_three_servers_take_r3_streams_at_once_fresh_and_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLSTREAM_NATS_URL", raising=False)  # else the stack uses that server
    (tmp_path / ".run").mkdir()
    for _start in ("fresh store", "restart over the kept store"):
        stack = Stack(tmp_path, nats_cluster=3)
        try:
            urls = stack._start_nats(detach=True)
            assert len(urls.split(",")) == 3
            asyncio.run(_declare_and_check(urls))
        finally:
            pids = list(stack.state.pids.values())
            stack.down(quiet=True)
        assert len(pids) == 3
        assert not [pid for pid in pids if _running(pid)], "./dev down left a NATS server running"
