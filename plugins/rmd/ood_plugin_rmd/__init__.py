"""Relative Mahalanobis distance scorer for oodx (Ren et al., 2021)."""
