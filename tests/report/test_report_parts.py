"""The report's parts without a browser: architecture diagrams for every fusion position (with
and without a decoder, with an unused sensor), axis ticks that never crowd, escaping, PNG
encoding. (The whole page in Chromium: tests/search/test_report_html.py.)"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.image import imread

import fusion
from autors.report.archdiagram import arch_svg
from autors.report.page import Cell, table
from autors.report.png import encode_png
from autors.report.svg import Point, linear_ticks, log_ticks, scatter, si

SVG = "{http://www.w3.org/2000/svg}"


def _arch(position: str, decoder: bool) -> dict:
    deep = {"kind": "conv", "width": 8, "depth": 2, "kernel": 3}
    arch = {
        "version": 1,
        "branches": {"s2": deep, "s1": dict(deep, width=4, depth=1, **(
            {"scale": 1} if decoder and position != "early" else {})), "dem": {"kind": "off"}},
        "fusion": {"op": "gate" if position != "late" else "sum", "position": position,
                   "width": 16, "trunk": {"kind": "off"} if position == "late" else
                   {"kind": "conv", "width": 12, "depth": 1, "kernel": 3}},
        "head": {"kind": "segmentation" if decoder else "patch", "hidden": 8},
    }
    if decoder:
        skips = fusion.POSITIONS.get(position).skip_scales(
            fusion.Arch.from_dict(dict(arch, decoder={"width": 16, "skips": []})))
        arch["decoder"] = {"width": 16, "skips": skips[:2], "up": "bilinear",
                           "context": "aspp"}
    return arch


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg[svg.index("<svg"):])  # well-formed XML, or this raises
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("decoder", [False, True])
@pytest.mark.parametrize("position", ["early", "middle", "multi", "late"])
def test_every_position_is_drawn_with_where_each_sensor_joins(position, decoder) -> None:
    arch = fusion.Arch.from_dict(_arch(position, decoder))
    svg = arch_svg(arch.to_dict(), {"s2": "optical, 4 bands", "s1": "sar, 2 bands"}, 5)
    texts = _texts(svg)
    assert {"s2", "s1", "dem"} <= set(texts) and "off: not used" in texts  # every sensor
    assert "5 classes" in texts and ("per pixel" if decoder else "per patch") in texts
    heads = [t for t in texts if t.endswith(" head")]
    if position == "late":  # one head (and decoder) per used sensor, logits fused after
        assert len(heads) == 2 and "late: fuses logits" in texts
        assert texts.count("decoder w16") == (2 if decoder else 0)
    else:
        assert len(heads) == 1 and "trunk conv w12" in texts
        assert ("decoder w16" in texts) == decoder
    joins = " ".join(texts)
    if position == "early":  # raw inputs: no branch is drawn
        assert "raw bands" in joins and "conv w8" not in texts
    elif position == "middle":
        assert "stage 2, 8 ch" in joins and "stage 1, 4 ch" in joins
    elif position == "multi":
        assert "3 stages, 8 ch" in joins and "2 stages, 4 ch" in joins
    if decoder and position != "early":
        assert "@1/2" in joins  # s1 enters at scale 1
    if decoder and arch.decoder.skips and position != "late":
        assert "skips " + ",".join(map(str, arch.decoder.skips)) in joins
    tips = re.findall(r'data-tip="([^"]*)"', svg)
    assert any("branch" in t or "sensor" in t for t in tips)  # hover details


def test_two_diagrams_in_one_page_have_their_own_arrow_markers() -> None:
    a = arch_svg(_arch("middle", False))
    b = arch_svg(_arch("middle", False))
    ids = re.findall(r'marker id="([^"]+)"', a + b)
    assert len(ids) == 2 and ids[0] != ids[1]


def test_an_invalid_arch_is_reported_not_raised() -> None:
    out = arch_svg({"version": 1, "branches": {"s<1>": {"kind": "nope"}}})
    assert "architecture not drawn" in out and "<1>" not in out


def test_axis_ticks_are_few_plain_and_never_crowd() -> None:
    # the range of the old pareto.png's latency axis (labels "2x10^-1 3x10^-1 4x10^-1")
    for lo, hi in ((0.15, 0.45), (1.1, 1.58), (3e3, 4e9), (0.8, 1.2), (10, 10000), (2700, 6100)):
        ticks = log_ticks(lo, hi)
        labels = [si(t) for t in ticks]
        assert 2 <= len(ticks) <= 6, (lo, hi, ticks)
        assert all(lo <= t <= hi for t in ticks)
        assert len(set(labels)) == len(labels) and not any("^" in x for x in labels)
    assert linear_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert [si(v) for v in (1500, 2e7, 0.05, 3)] == ["1.5k", "20M", "0.05", "3"]


def test_scatter_marks_every_status_and_escapes_tips() -> None:
    points = [Point(1e3, 0.5, "ok", "a <b>", front=True), Point(1e4, 0.4, "infeasible", "b"),
              Point(2e4, None, "failed", "c & d"), Point(3e4, None, "over_limit", "e")]
    svg = scatter(points, "FLOPs", "val_oa", x_log=True)
    ET.fromstring(svg)
    assert svg.count("<circle") == 2 and svg.count("<path") == 2  # crosses in the strip
    assert "a &lt;b&gt;" in svg and "c &amp; d" in svg and "<b>" not in svg


def test_tables_escape_their_text() -> None:
    html = table(["name <th>"], [["<script>x</script>"], [Cell("a&b", 1.0)]],
                 table_id="t", sortable=True)
    assert "<script>" not in html and "&lt;script&gt;" in html and "a&amp;b" in html
    assert 'class="sortable"' in html and 'id="t"' in html and 'data-v="1.0"' in html


def test_png_encoding_round_trips() -> None:
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        image = rng.integers(0, 256, (7, 5, channels), dtype=np.uint8)
        back = imread(io.BytesIO(encode_png(image)), format="png")
        assert np.array_equal((back * 255).round().astype(np.uint8), image)


def test_a_multi_target_network_has_a_head_per_target() -> None:
    arch = _arch("middle", False)
    arch["heads"] = {"cover": {"hidden": 8, "stage": "last"},
                     "height": {"hidden": 0, "stage": "fused"}}
    fusion.Arch.from_dict(arch)  # valid
    texts = _texts(arch_svg(arch))
    assert {"cover head", "height head", "cover", "height"} <= set(texts)
    assert "fused map" in texts  # the head reading the fused map, not the trunk


def test_the_front_is_read_from_either_summary_format() -> None:
    from autors.report.searchview import front_ids, objectives

    multi = {"objectives": [{"name": "val_oa", "goal": "max"}, {"name": "flops", "goal": "min"}],
             "front": {"objectives": [{"name": "val_oa", "goal": "max"},
                                      {"name": "flops", "goal": "min"}], "trial_ids": [3, 5]},
             "pareto_front": [{"trial_id": 3}]}
    assert objectives(multi, "val_oa") == [("val_oa", "max"), ("flops", "min")]
    assert front_ids(multi) == {3, 5}
    single = {"objectives": [], "pareto_front": [{"trial_id": 1}, {"trial_id": 4}]}
    assert objectives(single, "val_kappa") == [("val_kappa", "max"), ("flops", "min"),
                                               ("latency_ms", "min")]
    assert front_ids(single) == {1, 4} and front_ids(None) is None


def test_a_model_of_several_targets_shows_each_target() -> None:
    from types import SimpleNamespace

    from autors.report.models import metrics_detail

    cover = {"oa": 0.5, "aa": 0.4, "per_class_accuracy": {"water": 1.0, "<b>": 0.0},
             "per_class_iou": {"water": 0.5, "<b>": 0.0}, "support": {"water": 3, "<b>": 1},
             "confusion_matrix": [[3, 0], [1, 0]], "class_names": ["water", "<b>"],
             "num_samples": 4}
    height = {"rmse": 1.5, "r2": 0.25, "coverage95": 0.9, "n": 4, "units": "m"}
    seeds = [SimpleNamespace(metrics={"test": {"targets": {"cover": cover, "height": height},
                                               "scalars": {}, "oa": 0.5}}) for _ in range(2)]
    html = metrics_detail(seeds, "test")
    assert "target cover" in html and "target height (m)" in html
    assert "rmse" in html and "coverage95" in html and "confusion matrix" in html
    assert "summed over 2 seeds" in html and "&lt;b&gt;" in html and "<b>" not in html
    assert ">4<" in html  # counts that agree over seeds stay integers
