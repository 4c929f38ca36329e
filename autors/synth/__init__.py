"""Synthetic co-registered multi-sensor scenes where the fusion topology matters."""
