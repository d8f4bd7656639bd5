"""Sweeps: a grid expands to the product of its sizes, times the zip's length; names are
unique and every point's config carries its values."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studyc.spec.arms import expand_arms
from studyc.spec.loader import load
from studyc.spec.model import Study

values = st.lists(st.one_of(st.integers(-5, 50), st.sampled_from([1e-4, 3e-4, 0.5, 2.0]), st.booleans(),
                            st.sampled_from(["adam", "sgd", "lion"])), min_size=1, max_size=4, unique=True)
keys = st.sampled_from(["lr", "warmup", "tokens", "optim.name", "optim.beta", "depth"])


def study_with(arms: dict) -> Study:
    return Study.model_validate({"study": "s", "run": {"command": "x", "config": {"optim": {}}},
                                 "metrics": {"m": {}}, "arms": arms})


@settings(max_examples=200, deadline=None)
@given(grid=st.dictionaries(keys, values, min_size=1, max_size=3),
       zip_len=st.integers(0, 3), plain=st.integers(0, 2))
def test_expansion_count_is_the_product_of_grid_sizes_times_zip_length(grid, zip_len, plain):
    zipped = {"seed_offset": list(range(zip_len)), "tag": [f"t{i}" for i in range(zip_len)]} if zip_len else None
    arms = {f"plain{i}": {} for i in range(plain)}
    arms["sweep"] = {"grid": grid, **({"zip": zipped} if zipped else {}),
                     "name": "{arm}_" + "_".join(f"{{{k}}}" for k in [*grid, *(zipped or {})])}
    expanded = expand_arms(study_with(arms), problem=lambda *a: pytest.fail(f"unexpected problem {a}"))
    swept = [a for a in expanded.values() if a.family == "sweep"]
    assert len(swept) == math.prod(len(v) for v in grid.values()) * (zip_len or 1)
    assert len(expanded) == len(swept) + plain
    seen = set()
    for arm in swept:
        point = tuple(sorted((k, repr(v)) for k, v in arm.sweep.items()))
        assert point not in seen  # every point once
        seen.add(point)
        for key, value in arm.sweep.items():  # the dotted key lands inside its mapping
            node = arm.config
            for part in key.split("."):
                node = node[part]
            assert node == value


def test_name_lists_name_the_points_in_order(write_study):
    path = write_study("""
        study: s
        run: {command: x, config: {lr: 1.0e-3}}
        metrics: {m: {goal: min}}
        arms:
          a:
            zip: {lr: [2.0e-4, 3.0e-4, 4.5e-4], +warmup: [0.03, 0.05, 0.05]}
            name: [a_lr2e4_w3, a_lr3e4_w5, a_lr45e4_w5]
        """)
    arms = expand_arms(load(path).study)
    assert [(n, a.config["lr"], a.config["warmup"]) for n, a in arms.items()] == [
        ("a_lr2e4_w3", 2e-4, 0.03), ("a_lr3e4_w5", 3e-4, 0.05), ("a_lr45e4_w5", 4.5e-4, 0.05)]


def test_default_names_are_usable_in_expressions(write_study):
    path = write_study("""
        study: s
        run: {command: x}
        metrics: {m: {goal: min}}
        arms:
          k: {grid: {+coupling: [0.5, 1.0], +layer: [7]}}
        hypotheses:
          H1: {claim: weaker coupling is better, check: k_coupling0p5_layer7.m <= k_coupling1_layer7.m}
        """)
    assert set(expand_arms(load(path).study)) == {"k_coupling0p5_layer7", "k_coupling1_layer7"}
