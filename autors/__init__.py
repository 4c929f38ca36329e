"""autors: AutoML for multi-sensor remote sensing (fusion topology search on NNI + Ray)."""

__version__ = "0.1.0"
