"""Candidate fusion topologies as NNI model spaces over the fusion Arch format."""
