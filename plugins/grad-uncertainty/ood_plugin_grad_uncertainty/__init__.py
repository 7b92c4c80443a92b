"""Gradient-uncertainty scorer for oodx (Lee and AlRegib, ICIP 2020)."""
