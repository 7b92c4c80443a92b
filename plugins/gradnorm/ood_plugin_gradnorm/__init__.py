"""GradNorm scorer for oodx (Huang, Geng, Li, NeurIPS 2021)."""
