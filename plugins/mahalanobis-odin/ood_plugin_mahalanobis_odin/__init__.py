"""Mahalanobis with ODIN-style input preprocessing for oodx (Lee et al., NeurIPS 2018)."""
