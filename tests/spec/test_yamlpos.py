"""The positioned YAML tree: YAML 1.2 scalars, positions, anchors and merge keys."""

import pytest

from studyc.spec.yamlpos import PMap, StructureError, parse


def test_yaml_1_2_scalars():
    tree = parse("a: yes\nb: on\nc: 1:30\nd: 017\ne: 0x1f\nf: .inf\ng: -.5e3\nh: ~\ni:\nj: '1'\nk: 3.0e-4\nl: true\n")
    assert tree == {"a": "yes", "b": "on", "c": "1:30", "d": 17, "e": 31, "f": float("inf"), "g": -500.0,
                    "h": None, "i": None, "j": "1", "k": 3e-4, "l": True}


def test_positions_of_keys_values_and_items():
    tree = parse("study: s\narms:\n  a: {config: {lr: 0.1}}\n  b:\n    seeds: [0, 1]\n")
    assert tree.key_at["arms"] == (1, 0) and tree["arms"].value_at["a"] == (2, 5)
    assert tree["arms"]["b"]["seeds"].item_at == [(4, 12), (4, 15)]


def test_quoting_style_is_kept():
    tree = parse("a: \"x <= 1\"\nb: 'y'\nc: z\n")
    assert [tree[k].style for k in "abc"] == ['"', "'", None]


def test_anchors_and_merge_keys():
    tree = parse("base: &b {x: 1, y: 2}\ngate: &g nrmse <= 0.08\nd: {<<: *b, y: 3}\ne: *g\n")
    assert tree["d"] == {"x": 1, "y": 3} and isinstance(tree["d"], PMap)
    assert tree["e"] == "nrmse <= 0.08"


@pytest.mark.parametrize("text, problem", [
    ("a: 1\na: 2\n", "duplicate key 'a'"),
    ("? [a, b]\n: 1\n", "a key must be plain text"),
    ("a: &x [*x]\n", "refers to the node that contains it"),
])
def test_structures_no_study_can_be(text, problem):
    with pytest.raises(StructureError) as info:
        parse(text)
    assert problem in info.value.problem and info.value.hint


@pytest.mark.parametrize("text", ["a: !!int abc\n", "a: !!float x1\n", "a: " + "9" * 5000 + "\n"])
def test_numbers_that_cannot_be_numbers(text):
    with pytest.raises(StructureError) as info:
        parse(text)
    assert "is not a" in info.value.problem
