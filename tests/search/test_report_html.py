"""report.html opened in a real browser: headless Chromium (Debian's `chromium` package) renders
the page of a finished search whose trials partly failed (real training on the tiny scene, its
final model's train folder), of a cheap search with constraints (infeasible and never-trained
trials, final rows without train folders) and of an `autors train` run, with no console
error, a non-blank screenshot and a working sort.

Chromium is a system package: CI installs it (`.ci/run`), so there a missing browser fails
this test; elsewhere it is skipped with the reason. The test lives beside the search tests to
share their Ray instance and tiny scene.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from rich.console import Console

from autors.cli import main
from autors.report import REPORT_FILE, render_report
from autors.report.page import READY
from autors.search.runner import SearchOptions, run_search

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = 'roof <img src=x onerror="console.error(1)">'  # a class name that is markup


def _browser() -> str:
    if CHROMIUM is None:
        message = ("Chromium is not installed: `apt-get install -y chromium` (Debian's "
                   "package; .ci/run installs it)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; CI runs this test")
    return CHROMIUM


def render(page: Path, tmp: Path, fragment: str = "") -> tuple[np.ndarray, str]:
    """Open `page` in headless Chromium: the screenshot's pixels and the DOM after the page's
    script ran. Fails on any console message but the page's own READY line."""
    shot = tmp / f"{page.parent.name}.png"
    proc = subprocess.run(
        [_browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage",
         "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2400",
         f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri() + fragment],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, f"chromium failed:\n{proc.stderr[-3000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert any(READY in line for line in console), \
        f"the page's script did not run to its end:\n{proc.stderr[-3000:]}"
    errors = [line for line in console if READY not in line]
    errors += [line for line in proc.stderr.splitlines() if "Uncaught" in line]
    assert not errors, "console messages:\n" + "\n".join(errors)
    pixels = imread(shot)
    return pixels, proc.stdout


def assert_not_blank(pixels: np.ndarray) -> None:
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, "blank screenshot"
    colours = np.unique((rgb * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: the page did not render"


def assert_self_contained(text: str) -> None:
    """Opens offline: nothing is fetched (the SVG namespace is a name, not a fetch)."""
    fetched = re.findall(r"""(?:src|href)\s*=\s*["']?(?!data:|#)([^"'\s>]+)""", text)
    assert not fetched, fetched
    assert "<link" not in text and "@import" not in text and "url(http" not in text


def _rows(dom: str, table_id: str) -> list[str]:
    body = dom[dom.index(f'id="{table_id}"'):]
    body = body[: body.index("</table>")]
    return re.findall(r"<tr[^>]*>(.*?)</tr>", body[body.index("<tbody>"):], re.DOTALL)


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"))


def test_report_of_a_finished_search_with_a_failed_trial(make_task, trial_fns, tmp_path
                                                         ) -> None:
    """Trial 1 fails; the others train for real, and the best is retrained and tested (its
    train folder gives the final model's details)."""
    _browser()  # skip (or fail in CI) before any training
    log = _quiet()
    task = make_task(max_trials=3, concurrency=2, top_k=1, final_seeds=1)
    failed = run_search(task, SearchOptions(out_dir=tmp_path, name="failed", quiet=True,
                                            trial_fn=trial_fns.real_failing_once), log)
    assert main(["report", str(failed.run_dir)]) == 0
    page = failed.run_dir / REPORT_FILE
    text = page.read_text()
    assert_self_contained(text)
    pixels, dom = render(page, tmp_path, "#sort=trials:params:desc")
    assert_not_blank(pixels)
    by_id = {r.trial_id: r for r in failed.records}
    assert not by_id[1].ok and "deliberate failure in trial 1" in text
    rows = _rows(dom, "trials")
    assert len(rows) == 3 and 'class="failed"' in dom  # the failed trial is marked
    params = [float(m) for row in rows for m in re.findall(
        r'data-v="([0-9.]+)"', row.split("</td>")[8])]  # the params column, clicked down
    assert params == sorted(params, reverse=True) and 'aria-sort="descending"' in dom
    for section in ("task", "progress", "leaderboard", "architectures", "final", "provenance"):
        assert f'id="{section}"' in text
    summary = json.loads((failed.run_dir / "summary.json").read_text())
    assert summary["split"]["sha256"] in text and summary["versions"]["torch"] in text
    assert "confusion matrix" in text and "reliability" in text and "without_sar" in text
    assert text.count('class="arch"') == 1  # one diagram: the one finalist
    assert "data:image/png;base64," in text  # scene and split thumbnails
    # as a running search's folder (no summary.json yet): the page still renders from the
    # records, and says what it cannot show yet
    (failed.run_dir / "summary.json").unlink()
    text = render_report(failed.run_dir)
    assert "summary.json is not written yet" in text and "front is marked once" in text
    assert "deliberate failure in trial 1" in text


def test_report_of_a_constrained_search_marks_untrained_and_infeasible_trials(
        make_task, trial_fns, tmp_path) -> None:
    """A params limit and a latency limit: never-trained and infeasible trials are marked; its
    final rows (a cheap stand-in) have no train folders, and the page says so."""
    _browser()
    log = _quiet()
    task = make_task(max_trials=6, concurrency=2, top_k=2, final_seeds=1,
                     constraints={"max_params": 3000, "max_latency_ms": 0.2})
    cheap = run_search(task, SearchOptions(out_dir=tmp_path, name="cheap", quiet=True,
                                           trial_fn=trial_fns.cheap,
                                           final_fn=trial_fns.cheap_final), log)
    assert main(["report", str(cheap.run_dir)]) == 0
    text = (cheap.run_dir / REPORT_FILE).read_text()
    pixels, _ = render(cheap.run_dir / REPORT_FILE, tmp_path)
    assert_not_blank(pixels)
    marks = {"over a params/FLOPs limit, not trained": any(not r.trained for r in cheap.records),
             "over a constraint (infeasible)": any(r.ok and not r.feasible
                                                   for r in cheap.records)}
    for legend, present in marks.items():
        assert (legend in text) == present, legend
    assert "no train folder recorded" in text


def test_report_of_a_train_run_escapes_names_and_survives_missing_rasters(
        helpers, scene_task_file, tmp_path) -> None:
    """`autors train` writes the page; a class name that is markup stays text; once the
    rasters are gone the page says so instead of failing."""
    _browser()
    scene = Path(shutil.copytree(scene_task_file.parent, tmp_path / "scene"))
    data = yaml.safe_load((scene / "task.yaml").read_text())
    data["labels"]["classes"][2] = HOSTILE
    data["train"] = helpers.TINY_TRAIN
    (scene / "task.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run = tmp_path / "train_run"
    assert main(["train", str(scene / "task.yaml"), "--arch", "early_cnn", "--test",
                 "--out", str(run), "--quiet"]) == 0
    text = (run / REPORT_FILE).read_text()
    assert HOSTILE not in text and "roof &lt;img src=x onerror=" in text
    assert 'id="progress"' not in text and 'id="leaderboard"' not in text  # no search parts
    assert "per class (test)" in text and "robustness" in text
    pixels, _ = render(run / REPORT_FILE, tmp_path)  # the hostile name ran no script
    assert_not_blank(pixels)
    (scene / "optical.tif").unlink()
    assert main(["report", str(run)]) == 0
    text = (run / REPORT_FILE).read_text()
    assert "cannot be read here" in text and "optical.tif" in text
