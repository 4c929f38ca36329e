"""GeoTIFF multi-sensor data: reading, alignment, masks, splits, normalisation, datasets."""
