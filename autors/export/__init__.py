"""Export of trained models (TorchScript, ONNX, model card) and prediction over GeoTIFFs.

    export_model(run_folder, out_dir, rank=1)          # autors export
    model = load_exported(out_dir)                     # verified ExportedModel
    predict_scene(model, {"hsi": Path(...), ...}, Path("map.tif"), PredictOptions(),
                  masks={"optical": Path("clouds.tif")})   # any non-empty subset of sensors
"""

from autors.export.card import ModelCard, read_card
from autors.export.export import export_model
from autors.export.loader import ExportedModel, load_exported
from autors.export.predict import PredictOptions, PredictResult, predict_scene
from autors.export.source import Candidate, list_candidates

__all__ = [
    "Candidate",
    "ExportedModel",
    "ModelCard",
    "PredictOptions",
    "PredictResult",
    "export_model",
    "list_candidates",
    "load_exported",
    "predict_scene",
    "read_card",
]
