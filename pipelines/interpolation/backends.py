"""Interpolation backends: one small interface, a registry of named factories.

A backend turns two frames and a list of times into in-between frames. Taking several
``ts`` at once lets a backend estimate motion once per pair (a 4× job asks for 0.25, 0.5
and 0.75 together).

Adding a learned interpolator (RIFE / FILM / IFRNet class) later::

    class RifeBackend:
        name = "rife"
        def __init__(self, weights: str, device: str = "auto"):
            from safetensors.torch import load_file   # safetensors only: never torch.load / pickle
            self.model = build_rife().eval()
            self.model.load_state_dict(load_file(weights))
        def interpolate(self, frame0, frame1, ts):
            ...  # check_pair / check_ts from .flow_checks, then the model, uint8 H×W×3 out

    register_backend("rife", RifeBackend)
    get_backend("rife", weights="/models/rife.safetensors")

Ship a backend only with a test that runs it (tiny random weights saved to a local
safetensors file are enough to test loading and shapes).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import KinetographError

__all__ = ["InterpolationBackend", "register_backend", "get_backend", "available_backends"]


@runtime_checkable
class InterpolationBackend(Protocol):
    """What the streaming interpolator needs from a backend."""

    name: str

    def interpolate(self, frame0: np.ndarray, frame1: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
        """Frames at each ``t`` (0 < t < 1) between ``frame0`` (t=0) and ``frame1`` (t=1).

        Frames are RGB uint8 H×W×3 numpy arrays of one size, in and out; bad input raises
        KinetographError."""
        ...


BackendFactory = Callable[..., InterpolationBackend]

_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make ``get_backend(name, **options)`` call ``factory(**options)``."""
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise KinetographError(f"A backend name must be a short identifier such as 'rife', got {name!r}.")
    if not callable(factory):
        raise KinetographError(f"The factory for backend {name!r} must be callable, got {factory!r}.")
    if name in _REGISTRY and not replace:
        raise KinetographError(f"A backend named {name!r} is already registered; pass replace=True to swap it.")
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str | InterpolationBackend = "flow", **options) -> InterpolationBackend:
    """A backend instance by name (options go to its factory); an instance is passed through."""
    if not isinstance(name, str):
        if isinstance(name, InterpolationBackend):
            if options:
                raise KinetographError("Options can only be given with a backend name, not with an instance.")
            return name
        raise KinetographError(
            f"backend must be a name ({', '.join(available_backends())}) or a backend object, got {name!r}."
        )
    factory = _REGISTRY.get(name)
    if factory is None:
        raise KinetographError(
            f"Unknown interpolation backend {name!r}; available: {', '.join(available_backends())}."
        )
    backend = factory(**options)
    if not isinstance(backend, InterpolationBackend):
        raise KinetographError(f"Backend factory {name!r} returned {type(backend).__name__}, which has no "
                               "interpolate(frame0, frame1, ts) method and name.")
    return backend


def _flow_backend(**options) -> InterpolationBackend:
    from .flow import FlowBackend

    return FlowBackend(**options)


def _generative_backend(**options) -> InterpolationBackend:
    from .generative import make_generative_backend  # torch / diffusers load only when one is made

    return make_generative_backend(**options)


register_backend("flow", _flow_backend)
register_backend("generative", _generative_backend)
