"""The architecture search: NNI strategy adapter, Ray execution engine, run folders."""
