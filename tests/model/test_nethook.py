import pytest
import torch

from editlab.model.nethook import Trace, TraceDict, get_module, get_parameter


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.b(torch.relu(self.a(x)))


def test_trace_retains_input_and_output_and_removes_its_hook():
    m = Tiny()
    x = torch.randn(2, 3)
    with Trace(m, "a", retain_input=True) as t:
        m(x)
    assert torch.equal(t.input, x)
    assert torch.allclose(t.output, m.a(x))
    assert not m.a._forward_hooks


def test_edit_output_changes_the_result_only_inside_the_context():
    m = Tiny()
    x = torch.randn(2, 3)
    clean = m(x)
    with Trace(m, "b", edit_output=lambda out, name: out + 1.0):
        edited = m(x)
    assert torch.allclose(edited, clean + 1.0)
    assert torch.allclose(m(x), clean)


def test_hooks_are_removed_when_the_forward_raises():
    m = Tiny()
    with pytest.raises(RuntimeError):
        with TraceDict(m, ["a", "b"], edit_output=lambda out, name: (_ for _ in ()).throw(RuntimeError("boom"))):
            m(torch.randn(1, 3))
    assert not m.a._forward_hooks and not m.b._forward_hooks


def test_stop_ends_the_forward_after_the_last_listed_module():
    m = Tiny()
    with TraceDict(m, ["a"], stop=True) as td:
        m(torch.randn(1, 3))
    assert td["a"].output is not None  # recorded, and StopForward swallowed on exit


def test_lookups_name_what_is_missing():
    m = Tiny()
    with pytest.raises(LookupError, match="'c'"):
        get_module(m, "c")
    assert get_parameter(m, "a.weight") is m.a.weight
