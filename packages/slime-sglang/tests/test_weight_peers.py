"""Who may send weights: handle-carrying payloads from loopback only, others also from trusted peers.

In process (a real model, scheduler and receivers; only the HTTP request is built by hand) because every real
connection in a test comes from loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from slime.sglang.local_server.config import LocalServerConfig
from slime.sglang.local_server.model_runner import ModelRunner
from slime.sglang.local_server.scheduler import Scheduler
from slime.sglang.local_server.weights import WeightUpdates
from slime.sync import DiskSender, SharedMemorySender

pytestmark = pytest.mark.local_only

TRUSTED, STRANGER = "10.1.2.3", "10.9.9.9"


@pytest.fixture
def updates(tiny_qwen3_dir: Path) -> Iterator[WeightUpdates]:
    scheduler = Scheduler(ModelRunner(str(tiny_qwen3_dir)))
    scheduler.start()
    yield WeightUpdates(LocalServerConfig(model_path=str(tiny_qwen3_dir), trusted_peers=(TRUSTED,)), scheduler)
    scheduler.stop()


def post(updates: WeightUpdates, path: str, payload: dict[str, Any], peer: str) -> tuple[int, dict[str, Any]]:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (peer, 40000) if key == "peername" else default
    request = make_mocked_request("POST", path, transport=transport)
    request.read = mock.AsyncMock(return_value=json.dumps(payload).encode())  # type: ignore[method-assign]
    response = asyncio.run(updates.update(request))
    return response.status, json.loads(response.body)


def test_shared_memory_only_from_loopback(updates: WeightUpdates) -> None:
    weights = list(updates.scheduler.runner.model.state_dict().items())
    answers = []
    sender = SharedMemorySender(lambda p: answers.extend(post(updates, "/update_weights_from_tensor", p, peer)
                                                         for peer in (TRUSTED, STRANGER, "127.0.0.1")))  # fmt: skip
    sender.publish(weights, version=3)
    (trusted_status, trusted), (stranger_status, stranger), (local_status, local) = answers
    assert trusted_status == stranger_status == 400 and local_status == 200
    assert "refusing shm weight payloads from '10.1.2.3'" in trusted["message"]
    assert "from '10.9.9.9'" in stranger["message"] and local["success"]
    assert updates.scheduler.weight_version == "3"


def test_disk_payloads_from_trusted_peers(updates: WeightUpdates, tmp_path: Path) -> None:
    weights = list(updates.scheduler.runner.model.state_dict().items())
    answers = []
    sender = DiskSender(lambda p: answers.extend(post(updates, "/update_weights_from_disk", p, peer)
                                                 for peer in (STRANGER, TRUSTED)), tmp_path)  # fmt: skip
    sender.publish(weights, version=1)
    (stranger_status, stranger), (trusted_status, _) = answers
    assert stranger_status == 400 and "only loopback or ['10.1.2.3']" in stranger["message"]
    assert trusted_status == 200 and updates.scheduler.weight_version == "1"
