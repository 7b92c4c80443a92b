"""Mahalanobis and multi-layer Mahalanobis scorers for oodx (Lee et al., NeurIPS 2018)."""
