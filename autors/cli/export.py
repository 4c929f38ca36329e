"""`autors export RUN [--rank N | --pick knee|smallest|most-accurate] --out DIR` and
`autors export --list RUN`.

RUN is an `autors train` run folder (one model, rank 1) or an `autors search` run folder
(its final retrained models, rank 1 = best). The exported folder layout is documented in
`autors.export.export` and the model card in `autors.export.card`.

`--ensemble` packs every final seed of the rank into one model averaging their (calibrated)
probabilities, `--ensemble-top K` every seed of ranks 1..K (`autors.export.ensemble`); both
evaluate the ensemble on the members' validation and test pixels (the task's rasters are read).
`--features STAGE` (repeatable) adds a feature-extractor ONNX graph of the model's feature map
STAGE (`autors.export.features`: fused, trunk, decoder, as the model has them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from autors.errors import ModelFolderError
from autors.export.card import MetricSummary, ModelCard, SensorCard
from autors.export.ensemble import export_ensemble
from autors.export.export import (
    PICKS,
    export_model,
    pick_rank,
    rank_picks,
    summarize_metrics,
)
from autors.export.features import add_feature_onnx, stage_model
from autors.export.loader import load_exported
from autors.export.source import list_candidates, select


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model (TorchScript, ONNX, weights, model card)",
        description="Write a self-describing model folder from a run folder: arch.json, "
        "weights.pt, model.ts (TorchScript), model.onnx and model.json (the model card with "
        "sensors, bands, normalisation, classes, metrics, cost and provenance).",
    )
    p.add_argument("run", type=Path, help="an `autors train` or `autors search` run folder")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="the model folder to create (must not exist "
                      "or be empty)")
    what.add_argument("--list", action="store_true", help="list what RUN can export and exit")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rank", type=_rank, default=None,
                       help="which final model of a search run (1 = best by score; default 1)")
    which.add_argument("--pick", choices=PICKS, default=None,
                       help="the final model a multi-objective search (search.objectives) "
                       "picked on its Pareto front: the knee, the most accurate, or the "
                       "smallest (see `autors export --list RUN`)")
    ens = p.add_mutually_exclusive_group()
    ens.add_argument("--ensemble", action="store_true",
                     help="pack every final seed of --rank into one model that averages their "
                     "calibrated probabilities (evaluated on the same validation and test "
                     "pixels; the card lists the members and the single model beside it)")
    ens.add_argument("--ensemble-top", type=_rank, default=None, metavar="K",
                     help="the same with every seed of ranks 1..K")
    p.add_argument("--features", action="append", default=[], metavar="STAGE",
                   help="also write features_STAGE.onnx, a feature extractor of the model's "
                   "map STAGE (fused: after the fusion operator; trunk: after the shared "
                   "trunk; decoder: before a dense head), checked against PyTorch; repeat "
                   "for several")
    p.set_defaults(func=run)


def _rank(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"ranks start at 1, got {value}")
    return value


def _fmt(s: MetricSummary | None) -> str:
    if s is None:
        return "-"
    return f"{s.mean:.4f}" if s.std is None else f"{s.mean:.4f} ± {s.std:.4f}"


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    if not args.list:
        args.rank = pick_rank(args.run, args.pick) if args.pick else (args.rank or 1)
    if args.list:
        candidates = list_candidates(args.run)
        picked = rank_picks(args.run)
        table = Table(title=f"exportable models of {args.run}")
        for col in ("rank", "seeds", "val OA", "test OA", "params", "MFLOPs", "picked"):
            table.add_column(col, no_wrap=True)
        for c in candidates:
            val, test = summarize_metrics(c.runs, "val"), summarize_metrics(c.runs, "test")
            cost = c.best.metrics["cost"]
            table.add_row(
                str(c.rank), ",".join(map(str, c.seeds)), _fmt(val["oa"] if val else None),
                _fmt(test["oa"] if test else None), f"{cost['params']:,}",
                f"{cost['flops'] / 1e6:.2f}", ", ".join(picked.get(c.rank, [])) or "-",
            )
        console.print(table)
        for c in candidates:
            console.print(f"rank {c.rank}: {c.best.arch.summary()}\n  weights of seed "
                          f"{c.best.run['seed']} from {c.best.path}")
        return 0
    if args.features and (args.ensemble or args.ensemble_top):
        raise ModelFolderError("--features: an ensemble has no feature map of its own (each "
                               "member has its own); export a single model with --features")
    if args.features:  # before minutes of export: the model must have these stages
        best = select(args.run, args.rank).best
        for stage in args.features:
            stage_model(best.load_model(), stage, str(best.path / "arch.json"))
    if args.ensemble or args.ensemble_top:
        console.print(f"evaluating the ensemble of {args.run} on its validation and test "
                      "pixels ...")
        out = export_ensemble(args.run, args.out, args.rank, args.ensemble_top)
        card = load_exported(out).card  # re-read and verify what was written
        _print_ensemble(console, card, out)
    else:
        out = export_model(args.run, args.out, args.rank)
        card = load_exported(out).card  # re-read and verify what was written
        picked = f" (--pick {args.pick})" if args.pick else ""
        console.print(f"exported rank {args.rank}{picked} of {args.run} (seed "
                      f"{card.provenance.seed}) to {out}")
    console.print(f"inputs  {', '.join(_shape(s) for s in card.used_sensors)}"
                  f" -> {card.num_classes} classes, input size {card.task.input_size}"
                  + (", with validity masks (<sensor>__mask)" if card.export.takes_masks
                     else "")
                  + (", days of year (<sensor>__doy)" if card.steps else ""))
    rules = [f"{s.name}: " + " and ".join(
        what for what, on in (("mask raster", s.read.mask), (f"QA band {s.read.qa.band!r}"
                                                           if s.read.qa else "", s.read.qa))
        if on) for s in card.used_sensors if s.read.mask or s.read.qa]
    if rules:
        console.print(f"validity rules  {'; '.join(rules)} (predict: --mask NAME=PATH for "
                      "mask rasters)")
    if args.features:
        for f in add_feature_onnx(out, args.features):
            console.print(f"features  {f.file}: stage {f.stage}, {f.channels} channels at 1/"
                          f"{f.reduction}, onnx max|diff| {f.parity:.1e}")
    parity = ", ".join(f"{k} max|diff| {v:.1e}" for k, v in card.export.parity.items())
    console.print(f"checked {parity}")
    if card.metrics.test is None:
        console.print("note: the run has no test metrics (train with --test to get them)")
    elif card.robustness is not None:
        for row in card.robustness.accepted_subsets:
            console.print(f"measured  {', '.join(row.sensors)}: test OA "
                          f"{_fmt(row.test['oa'])} ({row.condition})")
    return 0


def _print_ensemble(console: Console, card: ModelCard, out: Path) -> None:
    """The members and the ensemble beside the single model."""
    ens = card.ensemble
    assert ens is not None
    console.print(f"exported an ensemble of {len(ens.members)} models to {out}")
    table = Table(title="ensemble vs single model (same pixels)")
    for col in ("model", "val OA", "test OA", "test ECE", "params", "MFLOPs", "latency ms"):
        table.add_column(col, no_wrap=True)

    def row(name: str, val: object, test: object, cost: object) -> None:
        table.add_row(name, f"{val.oa:.4f}", "-" if test is None else f"{test.oa:.4f}",
                      "-" if test is None else f"{test.ece:.4f}", f"{cost.params:,}",
                      f"{cost.flops / 1e6:.2f}", f"{cost.latency_ms_b1:.2f}")

    for i, m in enumerate(ens.members, start=1):
        t = "" if m.temperature is None else f", T {m.temperature:.3g}"
        row(f"member {i} (rank {m.rank}, seed {m.seed}{t})", m.val, m.test, m.cost)
    row(f"single (rank {ens.single.rank}, seed {ens.single.seed})", ens.single.val,
        ens.single.test, ens.single.cost)
    row("ensemble (mean probability)", ens.val, ens.test, card.cost)
    console.print(table)
    if any(m.temperature is None for m in ens.members):
        console.print("note: members without a calibration temperature contribute their raw "
                      "softmax")


def _shape(sensor: SensorCard) -> str:
    """`name[C]`, or a time series' `name[T x C]` with its first and last date."""
    if sensor.dates_per_scene is not None:
        return (f"{sensor.name}[up to {sensor.dates_per_scene} dates x {sensor.in_channels}] "
                "(each scene its own dates)")
    if sensor.dates is None:
        return f"{sensor.name}[{sensor.in_channels}]"
    return (f"{sensor.name}[{len(sensor.dates)} dates x {sensor.in_channels}] "
            f"({sensor.dates[0].date} .. {sensor.dates[-1].date})")
