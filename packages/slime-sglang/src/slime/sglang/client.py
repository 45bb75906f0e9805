"""`EngineClient`: the async client of SGLang-protocol servers (real SGLang, the local server, or a router).

One `aiohttp.ClientSession` per client (created in the running event loop, re-created if the loop changes)
carries every call. `generate` goes to the client's URL (a router spreads it over its workers);
control calls (abort, flush, weight updates, memory release) go to every worker directly, because routers do
not forward them. Workers come from `worker_urls` when given, else from the router's `GET /workers`, else the
URL itself is the one worker. `deliver_weights` sends a `slime.sync` payload as is to our local server
(`backend="local"`), or translated into stock SGLang's own calls (`backend="sglang"`, see
`slime.sglang.native_weights`). Every failure raises `EngineError` (`WeightSyncError` for weight updates) naming
the URL, the route and the engine's answer. It implements `slime.types.GenerationEngine`; it does not start or
stop processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from slime.sglang.native_weights import deliver_native
from slime.sglang.protocol import generate_body, parse_generate_response
from slime.sglang.server_args import MODULES, Backend
from slime.types import ContractError, EngineError, GenerateOutput, Sample, SamplingParams, Status, WeightSyncError

Payload = Mapping[str, Any] | Callable[[int, str], Mapping[str, Any]]
"""A control-call body: the same for every worker, or built per worker from `(index, url)`."""

WEIGHT_ROUTES: Mapping[tuple[str, str], str] = {
    ("disk", "update"): "/update_weights_from_disk",
    ("delta", "update"): "/update_weights_from_disk",
    ("shm", "update"): "/update_weights_from_tensor",
    ("broadcast", "init"): "/init_weights_update_group",
    ("broadcast", "update"): "/update_weights_from_distributed",
    ("broadcast", "destroy"): "/destroy_weights_update_group",
}
"""The engine route each `slime.sync` payload (transport, op) goes to."""


class EngineClient:
    """Talk to `url` (a router or one engine).

    Args:
        url: `http://host:port` of a router or an engine.
        worker_urls: the engines behind `url`, if known (otherwise asked from the router on each control call).
        max_connections: connection-pool size (slime: `--sglang-server-concurrency` x engines).
        request_timeout_s: limit for one `/generate` call; None waits as long as the engine takes.
        control_timeout_s: limit for other calls (weight loads included).
        backend: what serves the workers: `local` (takes slime.sync payloads) or `sglang` (stock SGLang: payloads
            are translated into its own weight-update calls).
        tp_size: GPUs per SGLang engine (its TP ranks each join a weight group and take a tensor copy).
    """

    def __init__(
        self,
        url: str,
        *,
        worker_urls: Sequence[str] | None = None,
        max_connections: int = 1024,
        request_timeout_s: float | None = None,
        control_timeout_s: float = 600.0,
        backend: Backend = "local",
        tp_size: int = 1,
    ) -> None:
        if backend not in MODULES:
            raise ContractError(f"`backend` {backend!r} is not one of {sorted(MODULES)}.")
        if tp_size < 1:
            raise ContractError(f"`tp_size` must be >= 1 (got {tp_size}); pass the engines' --tp-size.")
        self.backend, self.tp_size = backend, tp_size
        self.url = url.rstrip("/")
        self._workers = None if worker_urls is None else [u.rstrip("/") for u in worker_urls]
        self._max_connections = max_connections
        self._request_timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._control_timeout = aiohttp.ClientTimeout(total=control_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the shared session (safe to call twice)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- generation ------------------------------------------------------------------------------------------

    async def generate(
        self,
        input_ids: Sequence[int],
        sampling_params: SamplingParams | Mapping[str, Any],
        *,
        rid: str | None = None,
        return_logprob: bool = True,
    ) -> GenerateOutput:
        """One `/generate` call on token ids; log-probs of the sampled tokens when `return_logprob`."""
        body = generate_body(input_ids, sampling_params, return_logprob=return_logprob, rid=rid)
        answer = await self._request("POST", self.url, "/generate", body, self._request_timeout)
        return parse_generate_response(answer, expect_logprobs=return_logprob, source=self.url)

    async def generate_sample(self, sample: Sample, sampling_params: SamplingParams | Mapping[str, Any]) -> Sample:
        """Continue `sample` from its tokens and append the answer (tokens, log-probs, text, status, version).

        `sampling_params` is a `SamplingParams` or a dict in SGLang's names (what custom generate functions get).
        A sample that already has response tokens (a partial rollout) gets only the rest of the token budget;
        with no budget left it is marked TRUNCATED without a call.
        """
        if not sample.tokens:
            raise ContractError(f"sample {sample.index} has no tokens; tokenize its prompt before generating.")
        params: SamplingParams | dict[str, Any]
        if isinstance(sampling_params, SamplingParams):
            params = sampling_params.with_max_new_tokens(sampling_params.max_new_tokens - sample.response_length)
            budget = params.max_new_tokens
        else:
            budget = max(0, int(sampling_params["max_new_tokens"]) - sample.response_length)
            params = {**sampling_params, "max_new_tokens": budget}
        if sample.response_length and budget == 0:
            sample.status = Status.TRUNCATED
            return sample
        out = await self.generate(sample.tokens, params)
        sample.append_response(out.output_ids, out.output_log_probs, text=out.text, weight_version=out.weight_version)
        sample.status = Status.from_finish_reason(out.finish_reason)
        return sample

    # -- control: fanned out to every worker -------------------------------------------------------------------

    async def worker_urls(self) -> list[str]:
        """The engines behind this client's URL."""
        if self._workers is not None:
            return list(self._workers)
        try:
            listing = await self._request("GET", self.url, "/workers", None, self._control_timeout)
        except EngineError as exc:
            if "HTTP 404" in str(exc):
                return [self.url]  # not a router: the URL is the engine
            raise
        return [str(w["url"]).rstrip("/") for w in listing.get("workers", [])]

    async def abort_all(self) -> None:
        """Abort every in-flight request on every worker; those calls return with finish reason `abort`."""
        await self.post_each("/abort_request", {"abort_all": True, "rid": ""})

    async def abort(self, rid: str) -> None:
        """Abort one request by its `rid` (sent to every worker: only the router knows which one has it)."""
        await self.post_each("/abort_request", {"abort_all": False, "rid": rid})

    async def flush_cache(self) -> None:
        """Drop the prefix cache of every worker (SGLang refuses while requests run; this raises then)."""
        await self.post_each("/flush_cache", {})

    async def pause_generation(self, mode: str = "abort") -> None:
        """SGLang's pause: `abort` (finish in-flight requests as aborted), `retract` or `in_place`."""
        await self.post_each("/pause_generation", {"mode": mode})

    async def continue_generation(self) -> None:
        await self.post_each("/continue_generation", {})

    async def release_memory_occupation(self, tags: Sequence[str] | None = None) -> None:
        """Release engine memory (`weights`, `kv_cache`, `cuda_graph`; all when None)."""
        await self.post_each("/release_memory_occupation", {"tags": None if tags is None else list(tags)})

    async def resume_memory_occupation(self, tags: Sequence[str] | None = None) -> None:
        await self.post_each("/resume_memory_occupation", {"tags": None if tags is None else list(tags)})

    async def deliver_weights(self, payload: Mapping[str, Any]) -> list[Any]:
        """Hand one `slime.sync` payload to every worker (a sender's `deliver`).

        Local backend: the payload goes as is on the route of its transport; a broadcast `init` gets each
        worker's rank in the weight group as SGLang's `rank_offset` (1, 2, ... in worker order; the trainer is
        rank 0), so the sender's `world_size` is 1 + the number of workers. SGLang backend: see
        `slime.sglang.native_weights.deliver_native` (pause, flush, one call per bucket, continue).
        """
        if self.backend == "sglang":
            return await deliver_native(self, payload, tp_size=self.tp_size)
        key = (str(payload.get("transport")), str(payload.get("op", "update")))
        if key not in WEIGHT_ROUTES:
            raise WeightSyncError(f"no engine route for slime.sync payload {key}; known: {sorted(WEIGHT_ROUTES)}")
        body: Payload = payload
        if key == ("broadcast", "init"):
            body = lambda index, url: {**payload, "rank_offset": 1 + index}  # noqa: E731
        return await self._weights(WEIGHT_ROUTES[key], body)

    async def update_weights_from_disk(self, payload: Payload) -> list[Any]:
        """A `slime.sync` disk payload, or SGLang's `{"model_path", "weight_version"?}`, to every worker."""
        return await self._weights("/update_weights_from_disk", payload)

    async def update_weights_from_tensor(self, payload: Payload) -> list[Any]:
        """A `slime.sync` shared-memory / IPC payload (colocated engines; loopback only)."""
        return await self._weights("/update_weights_from_tensor", payload)

    async def init_weights_update_group(self, payload: Payload) -> list[Any]:
        """Join every worker to the trainer's broadcast group (build per-worker rank offsets with a callable)."""
        return await self._weights("/init_weights_update_group", payload)

    async def update_weights_from_distributed(self, payload: Payload) -> list[Any]:
        """Receive one broadcast publish on every worker."""
        return await self._weights("/update_weights_from_distributed", payload)

    async def destroy_weights_update_group(self, payload: Payload | None = None) -> list[Any]:
        return await self._weights("/destroy_weights_update_group", payload or {})

    async def server_info(self, url: str | None = None) -> dict[str, Any]:
        return await self._request("GET", url or self.url, "/server_info", None, self._control_timeout)

    async def model_info(self, url: str | None = None) -> dict[str, Any]:
        return await self._request("GET", url or self.url, "/model_info", None, self._control_timeout)

    async def post_each(self, path: str, payload: Payload) -> list[Any]:
        """POST to every worker concurrently; raise one `EngineError` listing every worker that failed."""
        urls = await self.worker_urls()
        if not urls:
            raise EngineError(f"no workers behind {self.url}; nothing answered {path}")
        calls: list[Awaitable[Any]] = [
            self._request("POST", url, path, payload(i, url) if callable(payload) else payload, self._control_timeout)
            for i, url in enumerate(urls)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = [f"{url}: {r}" for url, r in zip(urls, results, strict=True) if isinstance(r, BaseException)]
        if failed:
            raise EngineError(f"{path} failed on {len(failed)} of {len(urls)} workers: " + "; ".join(failed))
        return list(results)

    async def _weights(self, path: str, payload: Payload) -> list[Any]:
        try:
            return await self.post_each(path, payload)
        except EngineError as exc:
            raise WeightSyncError(str(exc)) from exc

    # -- transport -----------------------------------------------------------------------------------------------

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # A session is bound to the loop it was made in; a new loop (another asyncio.run) needs a new one.
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._loop = loop
        return self._session

    async def _request(self, method: str, base: str, path: str, body: Any, timeout: aiohttp.ClientTimeout) -> Any:
        session = self._session_for_loop()
        where = f"{method} {base}{path}"
        try:
            async with session.request(method, base + path, json=body, timeout=timeout) as response:
                raw = await response.read()
                if response.status >= 400:
                    text = raw.decode(errors="replace")
                    raise EngineError(f"{where} answered HTTP {response.status}: {text[:800]}")
        except aiohttp.ClientConnectorError as exc:
            raise EngineError(f"{where}: cannot connect ({exc.os_error}); is the server running?") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise EngineError(f"{where}: the server closed the connection mid-request (did it die?)") from exc
        except TimeoutError as exc:
            raise EngineError(f"{where}: no answer within {timeout.total} s") from exc
        except aiohttp.ClientError as exc:
            raise EngineError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if not raw.strip():
            return {}
        try:
            return orjson.loads(raw)  # ~2x faster than json on the 50 kB log-prob answers of a rollout
        except orjson.JSONDecodeError:
            return {"text": raw.decode(errors="replace")}  # some control routes (flush_cache) answer plain text
