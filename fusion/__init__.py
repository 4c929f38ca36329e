"""Plain-PyTorch fusion networks: sensor branches, fusion operators, heads, build_model."""
