"""User plugins: modules named by a task's `plugins` or an `autors.plugins` entry point register
parts; autors imports them on the search driver, in every Ray worker, in export and in predict.

The end-to-end test writes a plugin package (a sensor branch, a local fusion operator and a
search space that offers only them) into a folder that is importable (PYTHONPATH) but never
imported by the test, then runs the real CLI in fresh processes: `autors search` (a private
local Ray; its workers build the plugin's parts), `autors export` (TorchScript + ONNX, parity
checked) and `autors predict` (the model card says which module to import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import helpers  # tests/search/helpers.py: the tiny synthetic scene of the search tests
import pytest
import rasterio
import yaml

import fusion
from autors.cli import main
from autors.config import parse_task
from autors.errors import PluginError, TaskFileError
from autors.plugins import ENTRY_POINT_GROUP, load_plugins
from autors.search.cluster import SHIPPED_PACKAGES, _shipped_code_env
from autors.synth import generate_scene

PLUGIN = '''\
"""A user's parts: a branch, a local fusion operator and a search space offering only them."""

# No `from __future__ import annotations`: TorchScript reads class annotations.
import torch
from torch import nn

import fusion
from search_spaces import SPACES, BranchFusionSpace

__version__ = "0.3"


def _conv_tanh(cin: int, cout: int, kernel: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.Tanh())


@fusion.BRANCHES.register("plugin_conv")
class PluginConvBranch(fusion.Branch):
    """Convolutions with tanh activations."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = _conv_tanh(in_channels, width, kernel)
        self.blocks = nn.ModuleList(_conv_tanh(width, width, kernel) for _ in range(depth))


@fusion.FUSION_OPS.register("plugin_max")
class PluginMaxFusion(fusion.FusionOp):
    """Elementwise maximum of 1x1 projections: local (one position's output needs only that
    position's inputs), so fully convolutional prediction applies."""

    local = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.proj = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = self.proj[0](xs[0])
        for i, conv in enumerate(self.proj):
            if i > 0:
                out = torch.maximum(out, conv(xs[i]))
        return out


@SPACES.register("plugin_space")
class PluginSpace(BranchFusionSpace):
    name = "plugin_space"
    description = "the plugin's branch (or off) per sensor, fused by plugin_max"
    BRANCH_KINDS = ("plugin_conv",)
    WIDTHS = (4, 8)
    DEPTHS = (1,)
    KERNELS = (3,)
    POSITIONS = ("middle",)
    OPS = ("plugin_max",)
    FUSION_WIDTHS = (8,)
    TRUNK_LAYERS = (0,)
    PATCH_HEADS = ("centre",)
    HEAD_HIDDEN = (0,)
'''
MODULE = "lab_parts.parts"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the package `lab_parts` (module `lab_parts.parts`): on the PYTHONPATH of
    the CLI subprocesses, never on this process's sys.path."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "lab_parts").mkdir()
    (root / "lab_parts" / "__init__.py").write_text('"""A lab\'s autors parts."""\n')
    (root / "lab_parts" / "parts.py").write_text(PLUGIN)
    return root


@pytest.fixture(scope="module")
def scene_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("scene"), helpers.SCENE).files["task"]


def _autors(args: list[str], pythonpath: list[Path], cwd: Path,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m autors ARGS` in a fresh process with `pythonpath` added to PYTHONPATH; Ray's
    files go to a private short folder (AF_UNIX path limit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")])
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="autors-plg-")
    return subprocess.run([sys.executable, "-m", "autors", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_a_plugin_branch_and_operator_are_searched_exported_and_predicted(
    plugin_dir: Path, scene_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert MODULE not in sys.modules, "the test process must not import the plugin"
    task_file = tmp_path / "task.yaml"
    helpers.write_task(scene_task, task_file, space="plugin_space", strategy="random",
                       max_trials=2, concurrency=2, top_k=1, final_seeds=1)
    data = yaml.safe_load(task_file.read_text())
    task_file.write_text(yaml.safe_dump({**data, "plugins": [MODULE]}, sort_keys=False))

    search = _autors(["search", str(task_file), "--out", str(tmp_path / "runs"), "--name",
                      "plug", "--quiet"], [plugin_dir], tmp_path)
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]
    trials = [json.loads(line) for line in
              (tmp_path / "runs" / "plug" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 2
    for t in trials:  # trained in Ray workers, which had to import the plugin to build them
        arch, result = t["result"]["arch"], t["result"]
        assert result["status"] == "ok", result.get("error")
        assert arch["fusion"]["op"] == "plugin_max"
        kinds = {b["kind"] for b in arch["branches"].values()}
        assert "plugin_conv" in kinds and kinds <= {"plugin_conv", "off"}

    export = _autors(["export", str(tmp_path / "runs" / "plug"), "--out",
                      str(tmp_path / "model")], [plugin_dir], tmp_path)
    assert export.returncode == 0, export.stdout[-3000:] + export.stderr[-3000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["plugins"] == [{"module": MODULE, "version": "0.3",
                                "file": str(plugin_dir / "lab_parts" / "parts.py"),
                                "source": "task"}]
    assert set(card["export"]["parity"]) == {"torchscript", "onnx"}  # both checked by export
    assert max(card["export"]["parity"].values()) <= 1e-4

    scene = scene_task.parent
    sensors = [a for s in card["inputs"] for a in ("--sensor", f"{s}={scene / f'{s}.tif'}")]
    # The searched model reads SAR only, whose own 5 m grid is 2.5x the 2 m training grid: the
    # input checks stop that unless allowed (tested in tests/export/test_input_check.py).
    predict = ["predict", str(tmp_path / "model"), *sensors, "--allow-resolution-change",
               "--quiet", "--out"]
    result = _autors([*predict, str(tmp_path / "map.tif")], [plugin_dir], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "(fully convolutional)" in result.stderr  # plugin_max declared itself local
    with rasterio.open(tmp_path / "map.tif") as ds:
        mapped = ds.read(1)
        mapped = mapped[mapped != ds.nodata]
    assert mapped.size > 0 and set(mapped.tolist()) <= {c["value"] for c in card["classes"]}

    # Without the plugin importable, predict says which module the model card needs (in this
    # process, which has never had the plugin's folder on its path: no interpreter start-up).
    capsys.readouterr()
    assert main([*predict, str(tmp_path / "none.tif")]) == 2
    err = capsys.readouterr().err
    assert f"model.json: plugins: no plugin module named '{MODULE}'" in err
    assert "Traceback" not in err and MODULE not in sys.modules


def test_task_plugins_are_checked_and_a_missing_one_is_a_clear_error(
    scene_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    task_file = tmp_path / "task.yaml"
    helpers.write_task(scene_task, task_file)
    data = yaml.safe_load(task_file.read_text())
    (tmp_path / "lab_noop.py").write_text('__version__ = "1.0"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    task_file.write_text(yaml.safe_dump({**data, "plugins": ["lab_noop"]}))
    assert main(["validate", str(task_file)]) == 0
    assert "Plugins: lab_noop 1.0 (task)" in capsys.readouterr().out

    task_file.write_text(yaml.safe_dump({**data, "plugins": ["lab_missing.ops"]}))
    assert main(["train", str(task_file), "--arch", "early_cnn", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{task_file}: plugins: no plugin module named 'lab_missing.ops'" in err
    assert "PYTHONPATH" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()

    with pytest.raises(TaskFileError, match=r"plugins: 'lab_parts/parts\.py' is not a Python "
                                            r"module name"):
        parse_task({**data, "plugins": ["lab_parts/parts.py"]}, task_file)
    with pytest.raises(TaskFileError, match=r"plugins: lists a module twice"):
        parse_task({**data, "plugins": ["a.b", "a.b"]}, task_file)


def test_a_plugin_that_fails_while_importing_is_named_with_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab_broken.py").write_text("import fusion\n\n"
                                            "fusion.FUSION_OPS.register('concat')(object)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        load_plugins(["lab_broken"], "task.yaml: plugins")
    # The user's mistake, and where it surfaced (the registry refusing a taken name).
    assert str(err.value).startswith(
        "task.yaml: plugins: plugin module 'lab_broken' failed to import: ValueError: fusion "
        "op 'concat' is already registered")
    assert str(err.value).endswith(f"(at {fusion.registry.__file__}:{_raise_line()})")


def _raise_line() -> int:
    """The line of fusion/registry.py that refuses a name already taken."""
    lines = Path(fusion.registry.__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "is already registered" in line) - 1


def test_entry_point_plugins_load_once_and_are_recorded(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution declaring `autors.plugins` (a real dist-info on sys.path):
    its module is imported and its function called once per process, whatever the names."""
    (tmp_path / "lab_ep.py").write_text(textwrap.dedent('''\
        import fusion
        from fusion.heads import CentreHead

        CALLS = []


        def register() -> None:
            CALLS.append(1)
            fusion.HEADS.register("lab_centre")(type("LabCentre", (CentreHead,), {}))
        '''))
    info = tmp_path / "lab_ep-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-ep\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("lab_ep\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nlab = lab_ep:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first = load_plugins()
        again = load_plugins(["lab_ep"])
        assert sys.modules["lab_ep"].CALLS == [1]
        assert "lab_centre" in fusion.HEADS
        recorded = [p for p in again if p.module == "lab_ep"]
        assert [p.to_dict() for p in recorded] == [{
            "module": "lab_ep", "version": "1.2", "file": str(tmp_path / "lab_ep.py"),
            "source": "entry point lab"}]
        assert recorded[0] in first
    finally:
        fusion.HEADS.unregister("lab_centre")


def test_ship_code_sends_the_plugin_package_with_autors(plugin_dir: Path) -> None:
    """--ship-code's runtime environment holds the plugin's top-level package, and a worker of
    a real local Ray started with it imports the plugin from Ray's copy (the plugin's folder
    is only on the driver's sys.path, not in any environment variable)."""
    script = textwrap.dedent(f'''\
        import json, os, sys, tempfile
        from pathlib import Path
        sys.path.insert(0, {str(plugin_dir)!r})
        import ray
        from autors.plugins import load_plugins, shipped_modules
        from autors.search.cluster import _loopback_only, _shipped_code_env

        modules = shipped_modules(load_plugins([{MODULE!r}]))
        _loopback_only()
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env=_shipped_code_env(Path(tempfile.mkdtemp()), modules))

        @ray.remote
        def where() -> str:
            import lab_parts.parts
            return lab_parts.parts.__file__

        print(json.dumps({{"shipped": [m.__name__ for m in modules],
                           "worker_file": ray.get(where.remote())}}))
        ray.shutdown()
        ''')
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="autors-plg-")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, check=False, cwd=plugin_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shipped"] == ["lab_parts"]
    worker_file = Path(out["worker_file"])
    assert "runtime_resources" in worker_file.parts and worker_file.name == "parts.py"
    env_modules = _shipped_code_env(Path("."), [])["py_modules"]
    assert env_modules == list(SHIPPED_PACKAGES)  # no plugins: autors' own packages only
