"""Read and write hidden states through context managers that always remove their hooks.

Modelled on baukit's ``nethook``: modules are addressed by dotted names; ``Trace`` retains one
module's input and/or output, and can edit its output; ``TraceDict`` does the same for several.
Every access to a hidden state in editlab goes through here.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch


def get_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    for n, m in model.named_modules():
        if n == name:
            return m
    raise LookupError(f"module {name!r} not found in {type(model).__name__}")


def get_parameter(model: torch.nn.Module, name: str) -> torch.nn.Parameter:
    """Look a parameter up through its module, so tied weights (absent from named_parameters) work."""
    module_name, _, attr = name.rpartition(".")
    module = get_module(model, module_name) if module_name else model
    param = getattr(module, attr, None)
    if not isinstance(param, torch.Tensor):
        raise LookupError(f"parameter {name!r} not found")
    return param


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (after the last module we need)."""


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


class Trace(contextlib.AbstractContextManager):
    """Hook one module.

    ``retain_output`` / ``retain_input`` keep the tensors in ``.output`` / ``.input`` (the first
    positional input). ``edit_output(output, name) -> output`` may modify the output (in place or by
    returning a new one). ``stop=True`` raises :class:`StopForward` once the module has run; use
    it inside ``TraceDict(..., stop=True)`` or wrap the forward in ``contextlib.suppress``.
    ``detach`` (default True) detaches retained tensors; set False to keep the graph.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: str,
        retain_output: bool = True,
        retain_input: bool = False,
        edit_output: Callable | None = None,
        detach: bool = True,
        clone: bool = False,
        stop: bool = False,
    ):
        self.name = name
        self.input = None
        self.output = None
        module = get_module(model, name)

        def hook(_module, inputs, output):
            if retain_input:
                t = _first_tensor(inputs)
                if t is not None:
                    t = t.detach() if detach else t
                    self.input = t.clone() if clone else t
            if edit_output is not None:
                new = edit_output(output, name)
                if new is not None:
                    output = new
            if retain_output:
                t = _first_tensor(output)
                if t is not None:
                    t = t.detach() if detach else t
                    self.output = t.clone() if clone else t
            if stop:
                raise StopForward()
            return output

        self._handle = module.register_forward_hook(hook)

    def close(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)


class TraceDict(OrderedDict, contextlib.AbstractContextManager):
    """Hook several modules at once; ``td[name]`` is that module's :class:`Trace`.

    With ``stop=True`` the forward pass ends after the *last* listed module in execution order
    (the StopForward exception is swallowed on exit), which is how the statistics pass records
    every needed layer in one pass and skips the rest of the network.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        names: Iterable[str],
        retain_output: bool = True,
        retain_input: bool = False,
        edit_output: Callable | None = None,
        detach: bool = True,
        clone: bool = False,
        stop: bool = False,
    ):
        super().__init__()
        names = list(dict.fromkeys(names))
        order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        last = max(names, key=lambda n: order.get(n, -1)) if names else None
        try:
            for n in names:
                self[n] = Trace(
                    model,
                    n,
                    retain_output=retain_output,
                    retain_input=retain_input,
                    edit_output=edit_output,
                    detach=detach,
                    clone=clone,
                    stop=stop and n == last,
                )
        except Exception:
            self.close()
            raise

    def close(self):
        for t in self.values():
            t.close()

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)
