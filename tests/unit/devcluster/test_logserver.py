"""The pure part of the kubelet log endpoint (the endpoint itself is exercised by `kubectl logs` on the dev cluster)."""

from kinflow_dev.logserver import tail_lines


def test_tail_lines():
    text = "a\nb\nc\n"
    assert tail_lines(text, -1) == text
    assert tail_lines(text, 2) == "b\nc\n"
    assert tail_lines(text, 0) == ""
    assert tail_lines(text, 10) == text
