"""The batched usage update equals the one-at-a-time updates it replaces."""

from __future__ import annotations

from cortex.core.fleet import ModelOnNode, NodeView
from cortex.core.observe import apply_usage, set_counts, touch


def _node() -> NodeView:
    models = (ModelOnNode("a", in_flight=3), ModelOnNode("b"), ModelOnNode("c", last_used=1.0))
    return NodeView(name="n1", endpoint="http://n1", healthy=True, models=models)


def test_apply_usage_equals_set_counts_and_touch_in_order() -> None:
    """Counts and last uses land as set_counts and touch leave them, last changed last."""
    one_by_one = set_counts(_node(), "b", 2, 1)
    one_by_one = touch(one_by_one, "a", 5.0)
    one_by_one = set_counts(one_by_one, "b", 0, 0)
    one_by_one = set_counts(one_by_one, "missing", 1, 0)
    batched = apply_usage(
        _node(), [("a", None, 5.0), ("b", (0, 0), None), ("missing", (1, 0), None)]
    )
    assert batched == one_by_one
    assert [m.id for m in batched.models] == ["c", "a", "b"]
    assert batched.model("a") == ModelOnNode("a", in_flight=3, last_used=5.0)


def test_apply_usage_without_known_models_keeps_the_node() -> None:
    """Usage for models the node does not have changes nothing."""
    node = _node()
    assert apply_usage(node, [("missing", (1, 0), 2.0)]) is node
