"""Test-only shim that lets megatron-core 0.16.1 run on a CUDA-less CPU build of torch (gloo backend).

Import this module, and call `install()`, in a test worker process BEFORE megatron is imported (worker scripts
put the repository's `testing/` folder on `sys.path` and `from slime_testkit import megatron_cpu_shim`). It is never
imported by the package: on a GPU machine nothing here is needed. Everything it patches, and why (call sites are
megatron/core paths as of 0.16.1; see shared/reference/cpu-feasibility.md section 1):

1. `torch.cuda.current_device()` returns "cpu": megatron allocates with `device=torch.cuda.current_device()` and
   `.to(torch.cuda.current_device())` (rotary_pos_embedding.py, param_and_grad_buffer.py, utils.py, ...).
2. A `TorchFunctionMode` rewrites `device="cuda"` / `device=<int>` keyword arguments and `.to("cuda")` to the CPU
   (causal mask in transformer/utils.py, schedules.py, optimizer.py, clip_grads.py, state_dict_saver.py). A mode is
   used rather than wrapping `torch.zeros` & co.: wrappers make transformers leave rotary buffers uninitialised.
3. `torch.cuda.synchronize`, `torch.cuda.empty_cache` become no-ops; `torch.cuda.Stream(...)` and
   `torch.cuda.stream(...)` become inert objects (DDP's communication stream, param_and_grad_buffer.py).
4. CUDA RNG calls go to the CPU generator: `torch.cuda.manual_seed`, `torch.cuda.get_rng_state`,
   `torch.cuda.set_rng_state`, and megatron's own `tensor_parallel.random._get_cuda_rng_state` /
   `_set_cuda_rng_state` (model_parallel_cuda_manual_seed, the RNG tracker, activation recomputation).
5. `clip_grad_by_total_norm_fp32` (in `megatron.core.optimizer.clip_grads` and its import in
   `megatron.core.optimizer.optimizer`) is replaced by a device-agnostic equivalent: the original asserts
   `param.grad.type() == 'torch.cuda.FloatTensor'` and uses apex/TE's multi_tensor_applier on a CUDA buffer.
6. `torch.Tensor.type()` called with no argument reports `torch.cuda.<X>Tensor` for CPU float32/float16/bfloat16
   tensors: the distributed optimizer and the mixed-precision optimizer check parameter types by these strings
   (optimizer/distrib_optimizer.py, optimizer/optimizer.py). With an argument, `.type()` is untouched.

Nothing else is changed; the math of every kernel is torch's own CPU implementation.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_INSTALLED = False
_CUDA_TYPE_NAMES = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
}


def _cpu(device: Any) -> Any:
    if isinstance(device, int) and not isinstance(device, bool):
        return "cpu"
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


class _CudaToCpu(TorchFunctionMode):
    """Rewrites CUDA device arguments to the CPU for every torch function call."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        if getattr(func, "__name__", "") == "to" and len(args) > 1 and isinstance(args[1], str | int | torch.device):
            args = (args[0], _cpu(args[1]), *args[2:])
        return func(*args, **kwargs)


class _InertStream:
    """Stands in for `torch.cuda.Stream`: waits and synchronisation are no-ops on one CPU stream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, *args: Any) -> None:
        pass

    def wait_event(self, *args: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, *args: Any) -> None:
        return None


def _clip_grad_by_total_norm(parameters, max_norm, total_norm, use_decoupled_grad=False):
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr) for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0 and grads:
        torch._foreach_mul_([g.detach() for g in grads], clip_coeff)


_original_type = torch.Tensor.type


def _type(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    if not args and not kwargs and self.device.type == "cpu" and self.dtype in _CUDA_TYPE_NAMES:
        return _CUDA_TYPE_NAMES[self.dtype]
    return _original_type(self, *args, **kwargs)


def _patch_torch() -> None:
    cuda = torch.cuda
    cuda.current_device = lambda: "cpu"
    cuda.synchronize = lambda *a, **k: None
    cuda.empty_cache = lambda: None
    cuda.manual_seed = lambda seed: torch.manual_seed(seed)
    cuda.get_rng_state = cuda.random.get_rng_state = lambda *a, **k: torch.get_rng_state()
    cuda.set_rng_state = cuda.random.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    cuda.Stream = _InertStream
    cuda.current_stream = lambda *a, **k: _InertStream()
    cuda.stream = lambda *a, **k: contextlib.nullcontext()
    torch.Tensor.type = _type
    _CudaToCpu().__enter__()  # for the main thread; never exited in a worker
    # Torch function modes are per thread: threads started later (slime.train's in-process hosts run the trainer
    # on a worker thread) enter their own mode first.
    original_run = threading.Thread.run

    def run_with_mode(self: threading.Thread) -> None:
        with _CudaToCpu():
            original_run(self)

    threading.Thread.run = run_with_mode  # type: ignore[method-assign]


def _patch_megatron() -> None:
    import megatron.core.optimizer.clip_grads as clip_grads
    import megatron.core.optimizer.optimizer as optimizer
    import megatron.core.tensor_parallel.random as rng

    rng._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    rng._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm
    optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm


def install() -> None:
    """Apply every patch listed in the module docstring (idempotent). Imports megatron.core at the end."""
    global _INSTALLED
    if _INSTALLED:
        return
    if torch.cuda.is_available():
        raise RuntimeError("cpu_shim is for CUDA-less test machines; do not install it where a GPU exists")
    _patch_torch()
    _patch_megatron()
    _INSTALLED = True
