"""The accuracy-budget loop's choices: what it keeps float together, and in which order."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgevision.quantization.budget import Attempt, base_attempt, choose, exclusion_plan
from edgevision.quantization.sensitivity import (
    LayerSensitivity,
    exclusion_unit,
    head_units,
)


def _graph():
    """conv0 -> leaky0 -> conv1 -> leaky1 -> head (conv) -> split -> sigmoid / reshape -> outputs."""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c0"], name="conv0"),
        helper.make_node("LeakyRelu", ["c0"], ["a0"], name="leaky0"),
        helper.make_node("Conv", ["a0", "w"], ["c1"], name="conv1"),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], name="leaky1"),
        helper.make_node("Conv", ["a1", "w"], ["h"], name="head"),
        helper.make_node("Split", ["h"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
        helper.make_node("Sigmoid", ["s0"], ["scores"], name="sigmoid"),
        helper.make_node("Reshape", ["s1", "shape"], ["boxes"], name="reshape"),
    ]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    return helper.make_graph(nodes, "g", [io("x")], [io("scores"), io("boxes")], [w, shape])


def _ranked(*names):
    return [LayerSensitivity(n, "Conv", 20.0, 0.1, 64) for n in names]


def test_a_layer_goes_float_with_the_activation_after_it():
    assert exclusion_unit(_graph(), "conv1") == ["conv1", "leaky1"]
    assert exclusion_unit(_graph(), "head") == ["head", "split", "sigmoid"]


def test_the_head_is_kept_float_first_then_the_noisiest_layers():
    head = ["head", "split", "sigmoid", "reshape"]
    plan = exclusion_plan(_graph(), _ranked("conv1", "conv0", "head"))
    assert sorted(head_units(_graph())) == sorted(head)
    assert plan[0] == head
    assert plan[1] == head + ["conv1", "leaky1"]
    assert plan[-1] == head + ["conv1", "leaky1", "conv0", "leaky0"]


def test_choose_takes_the_smallest_variant_within_budget_else_the_best():
    a = [Attempt([], 0.70, 100, None), Attempt(["x"], 0.985, 120, None), Attempt(["x", "y"], 0.99, 140, None)]
    assert choose(a, 0.02).agreement == 0.985
    assert choose(a[:1] + [Attempt(["x"], 0.9, 120, None)], 0.02).agreement == 0.9


def test_layers_go_float_on_the_first_settings_that_tie_the_best_all_int8():
    faster, default, other = Attempt([], 0.9482, 100, None), Attempt([], 0.9486, 100, None), Attempt([], 0.80, 90, None)
    assert base_attempt([faster, default, other]) is faster  # 0.0004 apart: a tie, the faster settings go on
    assert base_attempt([Attempt([], 0.89, 100, None), default]) is default  # 0.06 apart: the better one


def test_a_backend_that_cannot_keep_layers_float_reports_instead_of_failing(tmp_path, monkeypatch):
    from edgevision.quantization import budget

    class NoExclude:
        name, can_exclude = "fake", False

    class Judge:
        metric = "mean output cosine"

    first = budget.Attempt(excluded=[], agreement=0.5, size_bytes=10, path=tmp_path / "m.onnx")

    class Trial:
        def __init__(self, *args):
            pass

        def run(self, exclude):
            return first

    monkeypatch.setattr(budget, "_Trial", Trial)
    result = budget.run_budget(
        tmp_path / "src.onnx",
        quantizer=NoExclude(),
        options=budget.QuantizeOptions(),
        calibration=None,
        judge=Judge(),
        max_drop=0.02,
        workdir=tmp_path,
    )
    assert result.met is False and result.best is first and len(result.attempts) == 1


def _cancelling_model(path):
    """a: 2 -> 2 conv whose small weight (0.0037) int8 rounds away; b: the difference of a's
    two outputs, times 100. a's own tensor barely changes in int8; the output is all that term."""
    import onnx

    a = numpy_helper.from_array(np.array([[1.0, 0.0037], [1.0, 0.0]], np.float32).reshape(2, 2, 1, 1), "wa")
    b = numpy_helper.from_array(np.array([[100.0, -100.0]], np.float32).reshape(1, 2, 1, 1), "wb")
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ya"], name="a"),
        helper.make_node("Conv", ["ya", "wb"], ["y"], name="b"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
        [a, b],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_layers_are_ranked_by_the_noise_they_put_on_the_outputs(tmp_path):
    from edgevision.quantization.sensitivity import rank_by_output

    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(0, 1, (1, 2, 8, 8)).astype(np.float32)} for _ in range(4)]
    ranked = rank_by_output(_cancelling_model(tmp_path / "m.onnx"), feeds)
    # a's int8 weights lose the whole output (0 dB) though its own output moves by 0.2%;
    # b's exact weights and uint8 input lose less. Ranked by local noise, b came first.
    assert [r.name for r in ranked] == ["a", "b"]
    assert ranked[0].sqnr_db < 1.0 < ranked[1].sqnr_db
    assert rank_by_output(tmp_path / "m.onnx", feeds, skip=["a"])[0].name == "b"


def test_the_budget_bisects_down_from_the_first_count_that_holds(tmp_path, monkeypatch):
    """The head (conv11) and 5 more layers float hold the budget: the head alone and 1, 2, 4 more
    miss, 8 more hold, then 6 and 5 are tried and 5 are kept, not 8."""
    from edgevision.quantization import budget

    graph = _chain(12)

    class Judge:
        metric = "mean output cosine"

    class Quantizer:
        name, can_exclude, faster_options = "fake", True, ()

    class Trial:
        def __init__(self, *args):
            pass

        def run(self, exclude, settings=None):
            body = len([n for n in exclude if n != "conv11"])
            return budget.Attempt(list(exclude), 0.99 if body >= 5 else 0.9, 100 + body, tmp_path / f"{body}.onnx")

        def rank(self, first):
            return [LayerSensitivity(f"conv{i}", "Conv", 20.0, 0.1, 64) for i in range(12)]

        def graph(self):
            return graph

    monkeypatch.setattr(budget, "_Trial", Trial)
    result = budget.run_budget(
        tmp_path / "src.onnx",
        quantizer=Quantizer(),
        options=budget.QuantizeOptions(),
        calibration=None,
        judge=Judge(),
        max_drop=0.02,
        workdir=tmp_path,
        progress=lambda line: None,
    )
    assert [a.excluded_count for a in result.attempts] == [0, 1, 2, 3, 5, 9, 7, 6]
    assert result.met and result.best.excluded == ["conv11", *(f"conv{i}" for i in range(5))]


def _chain(count):
    """x -> conv0 -> ... -> conv{count-1} -> y (no activations, no head beyond the last conv)."""
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    names = ["x", *[f"t{i}" for i in range(count - 1)], "y"]
    nodes = [helper.make_node("Conv", [names[i], "w"], [names[i + 1]], name=f"conv{i}") for i in range(count)]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    return helper.make_graph(nodes, "g", [io("x")], [io("y")], [w])


def test_layers_go_float_on_top_of_the_settings_that_agreed_best(tmp_path, monkeypatch):
    """A faster preset that agreed better in all int8 (0.94 against 0.89) is the one layers go float in."""
    from edgevision.quantization import budget

    graph = _chain(4)
    faster = {"preset": "performance"}

    class Judge:
        metric = "mean output cosine"

    class Quantizer:
        name, can_exclude, faster_options = "fake", True, (faster,)

    class Trial:
        def __init__(self, *args):
            pass

        def run(self, exclude, settings=None):
            agreement = (0.94 if settings else 0.89) + 0.05 * (len(exclude) >= 3)
            return budget.Attempt(list(exclude), agreement, 100, tmp_path / "m.onnx", dict(settings or {}))

        def rank(self, first):
            return [LayerSensitivity(f"conv{i}", "Conv", 20.0, 0.1, 64) for i in range(4)]

        def graph(self):
            return graph

    monkeypatch.setattr(budget, "_Trial", Trial)
    options = budget.QuantizeOptions()
    result = budget.run_budget(
        tmp_path / "src.onnx",
        quantizer=Quantizer(),
        options=options,
        calibration=None,
        judge=Judge(),
        max_drop=0.02,
        workdir=tmp_path,
        progress=lambda line: None,
    )
    assert [a.settings for a in result.attempts[:2]] == [faster, {}]
    assert all(a.settings == faster for a in result.attempts[2:]) and result.best.settings == faster
    assert result.met and result.best.agreement == 0.99


def test_repair_settings_are_tried_before_layers_go_float_and_carry_on(tmp_path, monkeypatch):
    """OpenVINO's overflow fix on every layer: tried when the default misses, kept for the
    exclusion attempts when it agrees better (on CPUs without VNNI it does)."""
    from edgevision.quantization import budget

    class Repairable:
        name, can_exclude, precision = "fake", True, "int8"
        repair_options = ({"overflow_fix": "enable"},)

    class Judge:
        metric = "mean output cosine"

    runs = []

    class Trial:
        def __init__(self, *args):
            pass

        def run(self, exclude, settings=None):
            runs.append((list(exclude), dict(settings or {})))
            score = 0.5 + 0.3 * bool(settings) + 0.05 * len(exclude)
            return budget.Attempt(list(exclude), score, 10 + len(exclude), tmp_path / "m.onnx", dict(settings or {}))

        def rank(self, first):
            assert first.settings == {"overflow_fix": "enable"}
            return _ranked("conv1", "conv0")

        def graph(self):
            return _graph()

    monkeypatch.setattr(budget, "_Trial", Trial)
    result = budget.run_budget(
        tmp_path / "src.onnx",
        quantizer=Repairable(),
        options=budget.QuantizeOptions(),
        calibration=None,
        judge=Judge(),
        max_drop=0.02,
        workdir=tmp_path,
    )
    assert runs[0] == ([], {}) and runs[1] == ([], {"overflow_fix": "enable"})
    assert all(settings == {"overflow_fix": "enable"} for _, settings in runs[2:]) and len(runs) > 2
    assert result.best.settings == {"overflow_fix": "enable"}
    runs.clear()
    Trial.rank = lambda self, first: _ranked("conv1", "conv0")
    budget.run_budget(
        tmp_path / "src.onnx",
        quantizer=Repairable(),
        options=budget.QuantizeOptions(extra={"overflow_fix": "first_layer_only"}),
        calibration=None,
        judge=Judge(),
        max_drop=0.02,
        workdir=tmp_path,
    )
    assert len(runs) > 1 and all(settings == {} for _, settings in runs)  # the user's choice stands
