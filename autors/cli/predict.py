"""`autors predict MODEL_DIR --sensor NAME=PATH ... [--mask NAME=PATH] --out MAP.tif`: a class
map and a confidence map from GeoTIFFs (layouts in `autors.export.writer`).

`autors predict MODEL_DIR --template NAME=PATH_WITH_{scene} ... [--mask NAME=PATH_WITH_{scene}]
[--scenes CSV] --out-dir DIR`: the same for every scene of a dataset (`autors.export.scenes`),
one map pair per scene.

Any non-empty subset of the model's inputs may be given (the others are absent); when it is
not all of them, the measured test accuracy of that subset is printed from the model card, or
that it was not measured.

Before predicting, a few windows of each raster are compared with what the model was trained
on (`autors.export.input_check`: pixel size, units and scale, value ranges, band order): an
error stops (a scene of many is skipped, `--strict` stops the run) with the fix
(`--scale`, `--sar-units`, `--allow-resolution-change`, `--ignore-check`); warnings and the
figures are printed and written as tags of the maps.

The confidence (and --probabilities) are calibrated by default: softmax of the logits divided by
the temperature the model card records (fitted on validation); `--uncalibrated` writes the raw
softmax. `--conformal ALPHA` adds the split-conformal prediction set of each pixel at error rate
ALPHA (an alpha the card records, 0.01..0.30): bands `set_size` and `set_mask`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autors.errors import DataError
from autors.export.card import MetricSummary, ModelCard, SubsetCard
from autors.export.features import predict_features
from autors.export.input_check import (
    CARD_PREDATES,
    RESOLUTION_FACTOR,
    RULE_NAMES,
    CheckOptions,
    InputReport,
)
from autors.export.inputs import ReadOverride
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, PredictResult, predict_scene, subset_accuracy
from autors.export.scenes import SceneOutcome, check_templates, list_jobs, predict_scenes
from autors.report.quicklook import write_preview

SCENES_HELP = "PATH_WITH_{scene}"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="apply an exported model to GeoTIFFs and write a class map",
        description="Align the given rasters on one grid, stream the scene by windows through "
        "the exported model and write MAP.tif (class values, nodata where no given sensor is "
        "valid) and MAP_confidence.tif (float32: confidence, [entropy], valid_sensors, "
        "[per-class probabilities]). Any non-empty subset of the model's sensors may be given: "
        "the others are absent, as a sensor missing from a training scene, and the measured "
        "accuracy of that subset is printed from the model card. Each sensor's nodata, QA "
        "rule and mask raster (--mask) are applied as in training. One scene: --sensor "
        "NAME=PATH ... --out MAP.tif. Many scenes: --template NAME=PATH_WITH_{scene} ... "
        "[--scenes CSV] --out-dir DIR writes DIR/<scene>.tif and DIR/<scene>_confidence.tif "
        "per scene; a scene that fails is reported and passed over (exit status 1 if any "
        "failed; --strict stops at it). Before predicting, a few windows of each raster are "
        "compared with the model card's record of the training inputs: a pixel size outside "
        "training / 1.5 to training x 1.5, or values in other units or scale (SAR linear "
        "against dB, reflectance 0-1 against x 10000, any factor of about 10^1.5 or more) "
        "stop with the fix; medians outside the training 1-99 %% range, many invalid pixels "
        "or swapped bands are warnings. Warnings, figures, the card's hash and the input "
        "paths are tags of the maps.",
    )
    p.add_argument("model", type=Path, help="an exported model folder (`autors export`)")
    p.add_argument("--sensor", action="append", type=_sensor_arg, default=[],
                   metavar="NAME=PATH", help="one scene: a sensor raster; repeat for each "
                   "sensor given (any of the model's 'inputs' in MODEL/model.json, at least "
                   "one; the others are absent). A time-series input: one PATH holding {date} "
                   "(YYYY-MM-DD), expanded with the card's dates (a model trained on each "
                   "scene's own dates: the files it matches), or a CSV with columns date,path "
                   "(and mask) listing the dated rasters; a date without a file is masked")
    p.add_argument("--mask", action="append", type=_sensor_arg, default=[],
                   metavar="NAME=PATH", help="a sensor's mask raster (clouds, gaps), read with "
                   "the rule the model was trained with (its invalid values in model.json); "
                   "required for each given sensor trained with one (a time series: a path "
                   "holding {date}, or the CSV's mask column). With --template: a "
                   "template with {scene}")
    p.add_argument("--out", type=Path, default=None,
                   help="one scene: the class map to write (.tif)")
    p.add_argument("--template", action="append", type=_sensor_arg, default=[],
                   metavar=f"NAME={SCENES_HELP}", help="many scenes: a sensor's raster with "
                   "{scene} where the scene id goes (e.g. s1=data/{scene}_S1.tif); repeat for "
                   "every sensor the model uses. Without --scenes, the scenes are the files "
                   "the first template matches")
    p.add_argument("--scenes", type=Path, default=None, metavar="CSV",
                   help="many scenes: a CSV listing them, one a row, by id or by file names "
                   "matching the templates (as datasets ship their splits; other file names, "
                   "e.g. labels, are passed over)")
    p.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                   help="many scenes: the folder of the maps (created if missing)")
    p.add_argument("--probabilities", action="store_true",
                   help="add one probability band per class to MAP_confidence.tif")
    p.add_argument("--mc-dropout", type=_count, default=0, metavar="N",
                   help="N >= 2 stochastic passes with dropout on (the fully convolutional "
                   "path keeps running: one dropout mask per pass over a window); adds the "
                   "bands 'entropy' (of the mean probabilities) and 'mutual_information' "
                   "(its epistemic part, where passes disagree), as an ensemble model does")
    p.add_argument("--features", default=None, metavar="STAGE",
                   help="one scene: also write MAP_STAGE_features.tif, the model's feature map "
                   "STAGE (fused: after the fusion operator; trunk: after the shared trunk; "
                   "decoder: before a dense head; as the model has them) at every pixel of "
                   "the map, one float16 band per channel, streamed by windows")
    p.add_argument("--uncalibrated", action="store_true",
                   help="write the raw softmax confidence (and probabilities) instead of the "
                   "calibrated one (default: logits divided by the temperature fitted on "
                   "validation, recorded in MODEL/model.json 'calibration'); for continuous "
                   "targets the head's raw std instead of the validation-calibrated one")
    p.add_argument("--conformal", type=_alpha, default=None, metavar="ALPHA",
                   help="add each pixel's split-conformal prediction set at error rate ALPHA "
                   "(e.g. 0.1: the true class is in the set for about 90%% of pixels like the "
                   "validation ones) as bands 'set_size' and 'set_mask' (bit i: class index "
                   "i); ALPHA is one the model card records (0.01 to 0.30 by 0.01)")
    p.add_argument("--window", type=_count, default=512,
                   help="core window side in pixels; memory scales with it, not with the "
                   "scene (default 512; rounded down to a multiple of 256 from 256 on)")
    p.add_argument("--batch-size", type=_count, default=None,
                   help="patches (patch classification) or tiles (segmentation) per forward "
                   "pass (default: 512 patches; tiles: as many as --tile-memory-mb holds, at "
                   "most 16)")
    p.add_argument("--tile-memory-mb", type=_count, default=1024,
                   help="segmentation: activation memory one tile may take, which sets the "
                   "overlap tiles' core size (larger: bigger cores, less halo overhead, faster; "
                   "default 1024)")
    p.add_argument("--grid", default=None, metavar="SENSOR",
                   help="sensor whose pixel grid the map uses (default: the task's grid "
                   "sensor if the model uses it, else the finest sensor)")
    p.add_argument("--per-patch", action="store_true",
                   help="patch classifiers: one forward pass per pixel's patch, even where the "
                   "model allows the (identical, much faster) fully convolutional pass")
    p.add_argument("--scale", action="append", type=_scale_arg, default=[],
                   metavar="NAME=FACTOR", help="this scene's raster of NAME stores values that "
                   "become the training's units when multiplied by FACTOR, replacing the "
                   "model's scale (e.g. s2=1 for reflectance 0-1 where the model read "
                   "reflectance x 10000 with scale 0.0001)")
    p.add_argument("--sar-units", action="append", type=_units_arg, default=[],
                   metavar="NAME=db|linear", help="this scene's SAR raster of NAME holds dB or "
                   "linear power (converted to dB on read), replacing the model's sar_units")
    p.add_argument("--allow-resolution-change", action="store_true",
                   help="predict even when a raster's pixel size (in metres) is outside the "
                   "training's / F to x F (recorded as a warning in the maps' tags)")
    p.add_argument("--resolution-tolerance", type=float, default=RESOLUTION_FACTOR,
                   metavar="F", help="the pixel-size factor F allowed before an error "
                   f"(default {RESOLUTION_FACTOR:g}: training / {RESOLUTION_FACTOR:g} to "
                   f"training x {RESOLUTION_FACTOR:g})")
    p.add_argument("--ignore-check", action="append", default=[], metavar="NAME",
                   choices=list(RULE_NAMES), help="predict even when this input check finds "
                   f"an error (recorded as a warning); one of {', '.join(RULE_NAMES)}")
    p.add_argument("--strict", action="store_true",
                   help="many scenes: stop at the first scene that fails (default: report it, "
                   "pass it over and go on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--preview", action="store_true",
                   help="also write MAP_preview.png next to each map: the class map in the "
                   "report's class colours with a legend of class names, and the confidence "
                   "map with a colour bar (read decimated: any scene size)")
    p.set_defaults(func=run)


def _sensor_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. hsi=hsi.tif), got {text!r}")
    return name, Path(path)


def _scale_arg(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=FACTOR (e.g. s2=1), got {text!r}"
                                         ) from None


def _units_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or value not in ("db", "linear"):
        raise argparse.ArgumentTypeError(f"expected NAME=db or NAME=linear (e.g. "
                                         f"s1=linear), got {text!r}")
    return name, value


def _checks(args: argparse.Namespace) -> tuple[CheckOptions, tuple[ReadOverride, ...]]:
    """The input checks' options and the read overrides of the flags."""
    allow = set(args.ignore_check) | ({"resolution"} if args.allow_resolution_change else set())
    options = CheckOptions(allow=frozenset(allow), resolution_factor=args.resolution_tolerance)
    reads = tuple(ReadOverride(n, scale=v) for n, v in args.scale) + \
        tuple(ReadOverride(n, sar_units=u) for n, u in args.sar_units)
    return options, reads


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"an error rate in (0, 1), e.g. 0.1; got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, stderr=True)
    many = _check_mode(args)
    if args.mc_dropout == 1:
        raise DataError("--mc-dropout 1 is a single stochastic pass: use N >= 2, or leave it "
                        "out for a deterministic map")
    checks, reads = _checks(args)
    options = PredictOptions(window=args.window, batch_size=args.batch_size,
                             probabilities=args.probabilities, mc_dropout=args.mc_dropout,
                             grid=args.grid, fully_convolutional=not args.per_patch,
                             checks=checks, reads=reads, calibrated=not args.uncalibrated,
                             conformal=args.conformal, tile_memory_mb=args.tile_memory_mb)
    if many:
        if args.features:
            raise DataError("--features writes one scene's feature map: use it with --sensor "
                            "NAME=PATH ... --out MAP.tif")
        return _run_scenes(args, console, options)
    sensors = _pairs(args.sensor, "--sensor")
    masks = _pairs(args.mask, "--mask")
    exported = load_exported(args.model)
    result = predict_scene(exported, {n: Path(p) for n, p in sensors.items()}, args.out,
                           options, progress=not args.quiet,
                           masks={n: Path(p) for n, p in masks.items()})
    _print_notes(console, result)
    _print_checks(console, result.checks)
    _print_subset(console, exported.card, result.sensors, result.measured)
    g = result.grid
    console.print(f"{result.class_map}: {g.height} x {g.width} px on the grid of "
                  f"'{result.grid_sensor}', {result.valid_pixels:,} valid pixels, "
                  f"{result.seconds:.1f} s ({result.method})")
    console.print(f"{result.scores}: bands {', '.join(result.bands)}")
    if args.preview:
        console.print(f"{_preview(exported.card, result)}: quicklook")
    if args.features:
        feats = predict_features(exported, {n: Path(p) for n, p in sensors.items()}, args.out,
                                 args.features, options,
                                 masks={n: Path(p) for n, p in masks.items()})
        for note in feats.notes:
            if note not in result.notes:
                console.print(f"note: {note}")
        console.print(f"{feats.path}: {feats.channels} float16 bands of the '{feats.stage}' "
                      f"map" + (f" (1/{feats.reduction} resolution, repeated over "
                               f"{feats.reduction} x {feats.reduction} px)"
                               if feats.reduction > 1 else "")
                      + f", {feats.seconds:.1f} s ({feats.method})")
    _print_calibration(console, exported.card, result, args.conformal)
    return 0


def _preview(card: ModelCard, result: PredictResult) -> Path:
    """MAP_preview.png next to the map (`autors.report.quicklook`), classes in card order."""
    return write_preview(result.class_map, result.scores, [c.value for c in card.classes],
                         [c.name for c in card.classes])


def conformal_line(card: ModelCard, alpha: float, quantile: float) -> str:
    """What the set bands at `alpha` promise and what the card measured on test."""
    head = (f"prediction sets at alpha {alpha:g}: class k is in a pixel's set where "
            f"1 - p_k <= {quantile:.4g}; the true class is in it for >= {1 - alpha:.0%} of "
            "pixels like the validation ones")
    rows = (card.calibration.conformal.test or []) if card.calibration else []
    row = next((r for r in rows if abs(r.alpha - alpha) <= 1e-9), None)
    if row is None:
        return head + " (test coverage at this alpha not measured)"
    return (head + f" (measured on test: coverage {row.coverage:.1%}, mean set size "
            f"{row.mean_set_size:.2f}, empty sets {row.empty:.1%})")


def _print_calibration(console: Console, card: ModelCard, result: PredictResult,
                       alpha: float | None) -> None:
    console.print(f"confidence: {escape(result.calibration)}")
    if alpha is not None and result.conformal_quantile is not None:
        console.print(escape(conformal_line(card, alpha, result.conformal_quantile)))


def _check_mode(args: argparse.Namespace) -> bool:
    """True for many scenes (--template), False for one (--sensor); the two modes' flags do
    not mix."""
    many = bool(args.template or args.scenes is not None or args.out_dir is not None)
    if args.sensor and many:
        given = [f for f, v in (("--template", args.template), ("--scenes", args.scenes),
                                ("--out-dir", args.out_dir)) if v]
        raise DataError(f"--sensor gives one scene's rasters, {' and '.join(given)} a dataset's: "
                        "use --sensor NAME=PATH ... --out MAP.tif for one scene, or "
                        f"--template NAME={SCENES_HELP} ... [--scenes CSV] --out-dir DIR for "
                        "many")
    if not many:
        if args.strict:
            raise DataError("--strict is for many scenes (--template ... --out-dir DIR): one "
                            "scene already stops at its first error")
        if not args.sensor:
            raise DataError("give the rasters: --sensor NAME=PATH ... --out MAP.tif for one "
                            f"scene, or --template NAME={SCENES_HELP} ... --out-dir DIR for "
                            "many")
        if args.out is None:
            raise DataError("--out MAP.tif: give the class map to write")
        return False
    if args.out is not None:
        raise DataError("--out names one map; with --template / --scenes give --out-dir DIR "
                        "(one DIR/<scene>.tif per scene)")
    if not args.template:
        what = "--scenes lists scene ids" if args.scenes is not None else \
            "--out-dir is for a dataset"
        raise DataError(f"{what}; give each sensor's file with --template "
                        f"NAME={SCENES_HELP} (e.g. s1=data/{{scene}}_S1.tif)")
    if args.out_dir is None:
        raise DataError("--out-dir DIR: give the folder for the scenes' maps")
    return True


def _pairs(pairs: list[tuple[str, Path]], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, path in pairs:
        if name in out:
            raise DataError(f"{flag} {name} is given twice ({out[name]} and {path})")
        out[name] = str(path)
    return out


def subset_line(card: ModelCard, given: list[str], measured: SubsetCard | None) -> str | None:
    """What the card measured for the inputs `given` (None when all are given: the card's
    test metrics are that measurement)."""
    absent = [n for n in card.inputs if n not in given]
    if not absent:
        return None
    head = f"predicted without {', '.join(absent)} (with {', '.join(given)}): "
    if measured is not None:
        t = measured.test
        return (head + f"measured test OA {_mean(t['oa'])}, kappa {_mean(t['kappa'])}, ECE "
                f"{_mean(t['ece'])} on {measured.num_samples:,} test pixels (model.json "
                f"robustness '{measured.condition}')")
    if card.metrics.test is None:
        why = "the source run was not evaluated on its test split (`autors train --test`)"
    elif card.robustness is None:
        why = "the model card has no robustness table (exported by an older autors)"
    else:
        why = ("the source run's robustness table removes one sensor at a time; this leaves "
               f"out {len(absent)}")
    return head + f"accuracy not measured ({why})"


def _mean(s: MetricSummary) -> str:
    """mean, ± std over seeds when there are several."""
    return f"{s.mean:.3f}" if s.std is None else f"{s.mean:.3f} ± {s.std:.3f}"


def _print_subset(console: Console, card: ModelCard, given: list[str],
                  measured: SubsetCard | None) -> None:
    line = subset_line(card, given, measured)
    if line is not None:
        console.print(f"note: {escape(line)}")


def _print_checks(console: Console, report: InputReport | None, figures: bool = True) -> None:
    """The input checks' outcome, each sensor's figures (with `figures`) and the warnings."""
    if report is None:
        return
    if report.status == "skipped":
        console.print(f"note: input checks {escape(report.summary())}")
        return
    console.print(f"input checks: {report.summary()} (against {escape(report.reference)})")
    if figures:
        for f in report.figures:
            console.print(f"  {escape(f.line())}")
    for w in report.warnings:
        console.print(f"[yellow]warning[/]: {escape(w.text())}")


def _print_notes(console: Console, result: PredictResult) -> None:
    for note in result.notes:
        console.print(f"note: {note}")
    if result.ignored_sensors:
        console.print(f"note: the model does not use {', '.join(result.ignored_sensors)}; "
                      "those rasters were not read")


def _run_scenes(args: argparse.Namespace, console: Console, options: PredictOptions) -> int:
    """Many scenes: list them, predict each, print progress and a summary; 1 if any failed."""
    templates = _pairs(args.template, "--template")
    masks = _pairs(args.mask, "--mask")
    exported = load_exported(args.model)
    check_templates(templates, exported.card, masks)
    jobs = list_jobs(templates, args.scenes, masks)
    console.print(f"{len(jobs)} scene(s) -> {args.out_dir}")
    card = exported.card
    given = [n for n in card.inputs if n in templates]
    _print_subset(console, card, given, subset_accuracy(card, given))
    quantile = None if args.conformal is None or card.calibration is None else \
        card.calibration.conformal.quantile(args.conformal)
    if quantile is not None and not args.uncalibrated:
        console.print(escape(conformal_line(card, args.conformal, quantile)))
    start = time.perf_counter()
    noted: set[str] = set()

    def report(i: int, outcome: SceneOutcome) -> None:
        if outcome.result is not None:  # notes once, not once per scene
            _print_new_notes(console, outcome.result, noted)
        checks = outcome.result.checks if outcome.result is not None else None
        if not args.quiet:
            elapsed = time.perf_counter() - start
            eta = elapsed / (i + 1) * (len(jobs) - i - 1)
            what = (f"{outcome.result.valid_pixels:,} valid px, {outcome.seconds:.1f} s, "
                    f"input checks {escape(_checks_word(checks))}"
                    if outcome.result is not None else
                    f"[red]FAILED[/] ({escape(outcome.error or '')})")
            console.print(f"scene {i + 1}/{len(jobs)} {escape(outcome.job.id)}: {what}; "
                          f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}")
        if checks is not None and checks.status != "skipped":  # skipped: said once, above
            for w in checks.warnings:
                console.print(f"  [yellow]warning[/] ({escape(outcome.job.id)}): "
                              f"{escape(w.text())}")

    if card.input_profile is None:
        console.print(f"note: input checks skipped: {CARD_PREDATES}")
    outcomes = predict_scenes(exported, jobs, args.out_dir, options, report, args.strict)
    if args.preview:
        for o in outcomes:
            if o.result is not None:
                _preview(card, o.result)
        console.print(f"quicklooks: {args.out_dir}/<scene>_preview.png")
    console.print(_summary_table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        console.print(f"[red]failed[/] {escape(o.job.id)}: {escape(o.error or '')}")
    console.print(f"{len(outcomes) - len(failed)} of {len(outcomes)} scene(s) predicted into "
                  f"{args.out_dir} in {_clock(time.perf_counter() - start)}"
                  + (f"; {len(failed)} failed (see above)" if failed else ""))
    return 1 if failed else 0


def _print_new_notes(console: Console, result: PredictResult, noted: set[str]) -> None:
    notes = list(result.notes)
    if result.ignored_sensors:
        notes.append(f"the model does not use {', '.join(result.ignored_sensors)}; those "
                     "rasters were not read")
    for note in notes:
        if note not in noted:
            noted.add(note)
            console.print(f"note: {note}")


def _summary_table(outcomes: list[SceneOutcome]) -> Table:
    table = Table(title="Scenes", title_justify="left")
    for col in ("scene", "pixels", "valid pixels", "seconds", "input checks", "status"):
        table.add_column(col, justify="left" if col in ("scene", "input checks", "status")
                         else "right")
    for o in outcomes:
        r = o.result
        checks = _checks_word(r.checks) if r else ("failed" if o.check_failed else "-")
        table.add_row(escape(o.job.id),
                      f"{r.grid.height * r.grid.width:,}" if r else "-",
                      f"{r.valid_pixels:,}" if r else "-", f"{o.seconds:.1f}",
                      escape(checks), "ok" if r else "[red]failed[/]")
    return table


def _checks_word(report: InputReport | None) -> str:
    """The input checks in a word or two: passed, N warning(s), skipped."""
    if report is None:
        return "-"
    return "skipped" if report.status == "skipped" else report.summary()


def _clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
