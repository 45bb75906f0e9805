"""Plugin resolution: load `module.path:function` or `module.path.function` and check it against a Protocol.

Used at config time so that a typo or a wrong signature fails before any work starts. It imports user
code (that is its job) but never calls it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, TypeVar

from slime.types.errors import ContractError

T = TypeVar("T")


def load_object(path: str, *, flag: str = "plugin path") -> Any:
    """Import and return the object named by `path` (`pkg.mod:attr`, `pkg.mod.attr` or `pkg.mod:Cls.attr`).

    Raises:
        ContractError: the module does not import or has no such attribute; the message says which.
    """
    if not isinstance(path, str) or not path.strip():
        raise ContractError(f"{flag} must be a dotted path like `my_pkg.my_mod:my_fn` (got {path!r}).")
    module_name, _, attr_path = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr_path:
        raise ContractError(f"{flag} {path!r} must name a module and an attribute, like `my_pkg.my_mod:my_fn`.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ContractError(
            f"{flag} {path!r}: module {module_name!r} does not import ({exc}). "
            "Check the spelling and that its directory is on PYTHONPATH."
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ContractError(f"{flag} {path!r}: {module_name!r} has no attribute {attr_path!r}.")
        obj = getattr(obj, part)
    return obj


def _protocol_call(protocol: type) -> Any:
    call = protocol.__dict__.get("__call__")
    if call is None:
        raise TypeError(f"{protocol.__name__} is not a callable-plugin Protocol (it has no __call__).")
    return call


def _describe(fn: Any) -> str:
    try:
        prefix = "async " if inspect.iscoroutinefunction(fn) else ""
        return f"{prefix}{getattr(fn, '__name__', type(fn).__name__)}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return repr(fn)


def check_signature(fn: Any, protocol: type, *, path: str = "<object>", flag: str = "plugin path") -> None:
    """Check that `fn` can be called the way `protocol.__call__` is called.

    The plugin must accept the Protocol's positional arguments positionally, must not require more, and
    must be `async` exactly when the Protocol is. Keyword-only extras of the Protocol (`**kwargs`) are
    optional for the plugin.

    Raises:
        ContractError: naming the path, the expected and the actual signature.
    """
    expected = _protocol_call(protocol)
    want_async = inspect.iscoroutinefunction(expected)
    exp_sig = inspect.signature(expected)
    exp_params = [p for p in exp_sig.parameters.values() if p.name != "self"]
    expected_text = f"{'async ' if want_async else ''}def fn({', '.join(str(p) for p in exp_params)})"

    def fail(why: str) -> ContractError:
        return ContractError(
            f"{flag} {path!r} does not match {protocol.__name__}: {why}.\n"
            f"  expected: {expected_text}\n  actual:   {_describe(fn)}"
        )

    if not callable(fn):
        raise fail("it is not callable")
    target = fn.__call__ if not inspect.isroutine(fn) and not inspect.isclass(fn) else fn
    if want_async != inspect.iscoroutinefunction(target):
        raise fail("it must be `async def`" if want_async else "it must be a plain `def`, not async")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise fail(f"its signature cannot be read ({exc})") from exc
    positional = [p for p in exp_params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    num_required = sum(1 for p in positional if p.default is p.empty)
    try:
        sig.bind(*range(num_required))
    except TypeError as exc:
        raise fail(f"it cannot take the {num_required} positional arguments ({exc})") from exc
    try:
        sig.bind(*range(len(positional)))
    except TypeError as exc:
        raise fail(f"it cannot take all {len(positional)} positional arguments ({exc})") from exc


def resolve(path: str, protocol: type[T], *, flag: str = "plugin path") -> T:
    """Load `path` and check it against the callable Protocol `protocol`; return the object.

    Example:
        >>> from slime.types.protocols import DynamicFilterFn
        >>> fn = resolve("my_filters:keep_all", DynamicFilterFn, flag="--dynamic-sampling-filter-path")
    """
    obj = load_object(path, flag=flag)
    check_signature(obj, protocol, path=path, flag=flag)
    return obj  # type: ignore[no-any-return]  # checked structurally above


def _protocol_members(protocol: type) -> set[str]:
    # typing's own `__protocol_attrs__` only exists from Python 3.12 on.
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in (object,) or klass.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


def check_conformance(obj: Any, protocol: type) -> None:
    """For plugin authors' own tests: raise `ContractError` if `obj` does not fit `protocol`."""
    if "__call__" in protocol.__dict__:
        check_signature(obj, protocol, path=getattr(obj, "__qualname__", repr(obj)))
        return
    missing = [name for name in _protocol_members(protocol) if not hasattr(obj, name)]
    if missing:
        raise ContractError(f"{type(obj).__name__} does not implement {protocol.__name__}: missing {sorted(missing)}.")
