"""`SynthConfig`: every setting of a synthetic scene, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from autors.errors import SynthConfigError
from autors.synth.catalogue import active_classes

# "slc": a complex SAR sensor (autors.synth.slc), only when asked for: not a default sensor.
SENSORS: tuple[str, ...] = ("optical", "sar", "lidar", "hsi", "slc")
DEFAULT_SENSORS: tuple[str, ...] = ("optical", "sar", "lidar", "hsi")
CLOUD_FLAGS = ("cloud_nodata", "cloud_qa")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one synthetic scene. `SynthConfig.small()` / `.benchmark()` are the presets.

    Lengths are in pixels of the label grid unless named `_m` (metres).
    """

    size: int = 128  # label grid is size x size pixels
    classes: int = 10  # the first K classes of catalogue.CLASSES
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    seed: int = 0
    looks: float = 4.0  # SAR equivalent number of looks: speckle CV = 1/sqrt(looks)
    n_train_per_class: int = 30  # sparse training pixels per class in train.tif
    # validation pixels per class in val.tif, from blocks of their own; None: no val.tif
    # (validation is carved from the training labels)
    n_val_per_class: int | None = None
    pixel_size_m: float = 2.0  # label / optical / hsi / lidar grid
    sar_pixel_factor: float = 2.5  # SAR pixel = factor x label pixel, on a shifted grid
    cloud_cover: float = 0.2  # fraction of the optical image under cloud (shadows extra)
    # Clouds and shadows as invalid optical pixels, the image left as rendered: cloud_nodata
    # writes optical_cloudmask.tif (0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow; the
    # task's optical mask rule: 1 and 3 are invalid), cloud_qa a last optical band "SCL" of
    # Sentinel-2 scene-classification codes (the task's qa rule: 3, 8, 9 invalid). Either or
    # both; they need the optical sensor.
    cloud_nodata: bool = False
    cloud_qa: bool = False
    hsi_bands: int = 60  # 400-1000 nm
    redge_shift_nm: float = 20.0  # maple's red-edge shift relative to oak (hsi only sees it)
    block_size: int | None = None  # train/test checkerboard block side; None: auto
    patch_size: int = 11  # written to the task; also the train/test separation margin
    task_epochs: int = 20  # training budget per trial written to task.yaml (early stopping ends most sooner)
    task_trials: int = 4  # search budget written to task.yaml
    spectra_dir: Path | None = None  # ASD folder; None: looked up (see spectra.find_asd_dir)
    name: str | None = None  # task name; None: synth_<size>_s<seed>

    def __post_init__(self) -> None:
        def bad(what: str) -> SynthConfigError:
            return SynthConfigError(f"synthetic scene setting {what}")

        if not 32 <= self.size <= 4096:
            raise bad(f"size={self.size} is out of range: use 32..4096 pixels")
        active_classes(self.classes)  # raises with the valid range
        if not self.sensors:
            raise bad(f"sensors is empty: pick some of {','.join(SENSORS)}")
        unknown = [s for s in self.sensors if s not in SENSORS]
        if unknown:
            raise bad(f"sensors has unknown name(s) {unknown}: valid are {','.join(SENSORS)}")
        if len(set(self.sensors)) != len(self.sensors):
            raise bad(f"sensors lists a sensor twice: {list(self.sensors)}")
        if not self.looks > 0:
            raise bad(f"looks={self.looks} must be > 0 (1 = single-look speckle)")
        if self.n_train_per_class < 1:
            raise bad(f"n_train_per_class={self.n_train_per_class} must be >= 1")
        if self.n_val_per_class is not None and self.n_val_per_class < 1:
            raise bad(f"n_val_per_class={self.n_val_per_class} must be >= 1 (or None)")
        if not self.pixel_size_m > 0:
            raise bad(f"pixel_size_m={self.pixel_size_m} must be > 0")
        if not 1.0 <= self.sar_pixel_factor <= 8.0:
            raise bad(f"sar_pixel_factor={self.sar_pixel_factor} must be in 1..8")
        if not 0.0 <= self.cloud_cover <= 0.8:
            raise bad(f"cloud_cover={self.cloud_cover} must be in 0..0.8")
        if (self.cloud_nodata or self.cloud_qa) and "optical" not in self.sensors:
            flags = [f"{f}=True" for f in CLOUD_FLAGS if getattr(self, f)]
            raise bad(f"{' and '.join(flags)} {'needs' if len(flags) == 1 else 'need'} the "
                      f"optical sensor, whose clouds are masked: sensors="
                      f"{','.join(self.sensors)} leaves it out")
        if not 8 <= self.hsi_bands <= 200:
            raise bad(f"hsi_bands={self.hsi_bands} must be in 8..200")
        if self.task_epochs < 1 or self.task_trials < 1:
            raise bad(f"task_epochs={self.task_epochs} and task_trials={self.task_trials} must be >= 1")
        if self.patch_size < 1 or self.patch_size % 2 == 0:
            raise bad(f"patch_size={self.patch_size} must be odd and >= 1")
        if self.block_size is not None and self.block_size < self.patch_size + 4:
            raise bad(
                f"block_size={self.block_size} leaves no interior pixels: use at least "
                f"patch_size + 4 = {self.patch_size + 4}"
            )
        # Keep sensors in canonical order so file lists and task files are stable.
        object.__setattr__(self, "sensors", tuple(s for s in SENSORS if s in self.sensors))

    @classmethod
    def small(cls, seed: int = 0) -> SynthConfig:
        """128 x 128 (256 m at 2 m), 30 train pixels per class: tests and demos."""
        return cls(size=128, seed=seed)

    @classmethod
    def benchmark(cls, seed: int = 0) -> SynthConfig:
        """512 x 512 (1 km at 2 m), 40 train pixels per class, up to 120 validation pixels per
        class from validation blocks of their own (over 1,000: candidates are told apart in
        steps under 0.1 point), a real search budget."""
        return cls(size=512, n_train_per_class=40, n_val_per_class=120, task_epochs=30,
                   task_trials=20, seed=seed)

    @property
    def record(self) -> dict:
        """The settings for a provenance record: paths as text; the cloud mask flags only when
        set (a record without them is the one written before they existed)."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        return {k: v for k, v in out.items() if k not in CLOUD_FLAGS or v}

    @property
    def task_name(self) -> str:
        return self.name or f"synth_{self.size}_s{self.seed}"

    @property
    def split_block(self) -> int:
        """Side of the train/test blocks: 32 px up to 256 px scenes, then size/8."""
        if self.block_size is not None:
            return self.block_size
        return max(32, self.patch_size + 4, self.size // 8)
