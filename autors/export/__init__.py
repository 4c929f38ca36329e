"""Export of trained models (TorchScript, ONNX, model card) and prediction over GeoTIFFs."""
