"""`Scheduler`: continuous batching for the local server on one dedicated thread.

Every iteration it (1) runs queued control operations (weight loads, version changes) between model steps,
(2) finishes aborted requests with their partial output, (3) admits waiting requests up to `max_batch_size`
and prefills them as one batch, (4) runs one decode step for every running request, sampling and stop
checks per row. Finished rows leave the batch at once; new rows join the next iteration. Aborts and control
operations therefore take effect within one model step. It does not speak HTTP and does not parse requests.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from slime.sglang.local_server.generation_request import GenerationRequest, RequestError
from slime.sglang.local_server.kv_batch import KVBatch
from slime.sglang.local_server.model_runner import ModelRunner
from slime.sglang.local_server.sampling import sample

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Scheduler:
    """Owns the running batch; all model work happens on its thread."""

    def __init__(
        self,
        runner: ModelRunner,
        *,
        max_batch_size: int = 256,
        max_prefill_tokens: int = 16384,
        seed: int = 0,
        weight_version: str = "default",
    ) -> None:
        self.runner = runner
        self.max_batch_size = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self.weight_version = weight_version
        self.hold_reasons: set[str] = set()
        """While non-empty (pause_generation, released weights), no model step runs; requests wait."""
        self._generator = torch.Generator().manual_seed(seed)
        self._cond = threading.Condition()
        self._waiting: collections.deque[GenerationRequest] = collections.deque()
        self._controls: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            collections.deque()
        )
        self._live: dict[str, GenerationRequest] = {}
        self._rows: list[GenerationRequest] = []
        self._batch: KVBatch | None = None
        self._next_tokens = torch.empty(0, dtype=torch.long)
        self._stopping = False
        self.num_finished = 0
        """Requests completed so far (any finish reason); shows how a router spread its traffic."""
        self._thread = threading.Thread(target=self._loop, name="local-server-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; `request.on_done` is called from the scheduler thread when it finishes.

        Raises:
            RequestError: another live request already uses this `rid`.
        """
        with self._cond:
            if request.rid in self._live:
                raise RequestError(f"a request with rid {request.rid!r} is already running; rids must be unique")
            self._live[request.rid] = request
            self._waiting.append(request)
            self._cond.notify_all()

    def abort(self, rid: str | None = None, *, abort_all: bool = False, message: str = "Abort by user") -> int:
        """Mark matching waiting/running requests aborted; they return their partial output. Returns the count."""
        with self._cond:
            targets = list(self._live.values()) if abort_all else [r for r in (self._live.get(rid or ""),) if r]
            for request in targets:
                request.abort_message = message
            self._cond.notify_all()
        return len(targets)

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `fn` on the scheduler thread between two model steps (even while generation is held)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            self._controls.append((fn, future))
            self._cond.notify_all()
        return future

    def set_hold(self, reason: str, held: bool) -> None:
        with self._cond:
            (self.hold_reasons.add if held else self.hold_reasons.discard)(reason)
            self._cond.notify_all()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def load(self) -> dict[str, int]:
        with self._cond:
            return {"num_running_reqs": len(self._rows), "num_waiting_reqs": len(self._waiting),
                    "num_finished_reqs": self.num_finished}  # fmt: skip

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._controls and not self._has_work():
                    self._cond.wait(timeout=1.0)
                if self._stopping:
                    break
                controls = list(self._controls)
                self._controls.clear()
            for fn, future in controls:
                _run_control(fn, future)
            if not self._has_work():
                continue
            try:
                self._step()
            except Exception as exc:  # a model error must fail the requests, not kill the server
                logger.exception("model step failed")
                self._fail_all(f"model step failed: {exc!r}")
        self._fail_all("server is shutting down")

    def _has_work(self) -> bool:
        if any(r.abort_message is not None and r.finish_reason is None for r in self._live.values()):
            return True
        return not self.hold_reasons and bool(self._waiting or self._rows)

    def _step(self) -> None:
        self._finish_aborted()
        if self.hold_reasons:
            return
        new_rows = self._admit()
        if self._rows:
            assert self._batch is not None
            self._batch, logits = self.runner.decode(self._batch, self._next_tokens)
            self._next_tokens = self._sample_into(self._rows, logits)
        if new_rows:
            new_batch, logits = self.runner.prefill([r.input_ids for r in new_rows])
            new_tokens = self._sample_into(new_rows, logits)
            self._batch = new_batch if self._batch is None else self._batch.merge(new_batch)
            self._next_tokens = torch.cat([self._next_tokens, new_tokens])
            self._rows = self._rows + new_rows
        self._drop_finished()

    def _admit(self) -> list[GenerationRequest]:
        admitted: list[GenerationRequest] = []
        prefill_only: list[GenerationRequest] = []
        budget = self.max_prefill_tokens
        with self._cond:
            while self._waiting and len(self._rows) + len(admitted) < self.max_batch_size:
                request = self._waiting[0]
                if admitted and len(request.input_ids) > budget:
                    break
                self._waiting.popleft()
                if request.max_new_tokens == 0:
                    prefill_only.append(request)
                    continue
                budget -= len(request.input_ids)
                admitted.append(request)
        for request in (*prefill_only, *admitted):
            self._score_input(request)  # outside the lock: HTTP threads keep submitting meanwhile
        for request in prefill_only:
            if request.error is None:
                request.finish_reason = {"type": "length", "length": 0}
            self._complete(request)
        for request in admitted:
            if request.error is not None:
                self._complete(request)
        return [r for r in admitted if r.error is None]

    def _score_input(self, request: GenerationRequest) -> None:
        """Fill `input_logprobs` when asked for; a model error fails this request only."""
        if not request.needs_input_logprobs:
            return
        try:
            request.input_logprobs = self.runner.input_logprobs(request.input_ids, request.logprob_start_len + 1)
        except Exception as exc:  # reported to the client as HTTP 500; the server goes on
            logger.exception("input log-probs failed")
            request.error = f"input log-probs failed: {exc!r}"

    def _sample_into(self, rows: list[GenerationRequest], logits: torch.Tensor) -> torch.Tensor:
        tokens, logprobs = sample(logits, [r.sampling for r in rows], self._generator)
        tokenizer = self.runner.tokenizer
        for request, token, logprob in zip(rows, tokens.tolist(), logprobs.tolist(), strict=True):
            request.append(token, logprob, tokenizer)
        return tokens

    def _finish_aborted(self) -> None:
        with self._cond:
            aborted = [r for r in self._waiting if r.abort_message is not None]
            for request in aborted:
                self._waiting.remove(request)
        for request in aborted:
            request.abort(request.abort_message or "aborted")
            self._complete(request)
        for request in self._rows:
            if request.finish_reason is None and request.abort_message is not None:
                request.abort(request.abort_message)
        self._drop_finished()

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self._rows) if r.finish_reason is None]
        if len(keep) == len(self._rows):
            return
        for request in self._rows:
            if request.finish_reason is not None:
                self._complete(request)
        if keep:
            assert self._batch is not None
            self._batch = self._batch.select(keep)
            self._next_tokens = self._next_tokens[keep]
        else:
            self._batch, self._next_tokens = None, torch.empty(0, dtype=torch.long)
        self._rows = [self._rows[i] for i in keep]

    def _fail_all(self, message: str) -> None:
        with self._cond:
            victims = list(self._waiting) + self._rows
            self._waiting.clear()
        self._rows, self._batch, self._next_tokens = [], None, torch.empty(0, dtype=torch.long)
        for request in victims:
            request.error = message
            self._complete(request)

    def _complete(self, request: GenerationRequest) -> None:
        with self._cond:
            self._live.pop(request.rid, None)
            self.num_finished += 1
        request.done.set()
        if request.on_done is not None:
            request.on_done(request)


def _run_control(fn: Callable[[], Any], future: concurrent.futures.Future[Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:  # handed to the awaiting HTTP handler, which reports it
        future.set_exception(exc)
