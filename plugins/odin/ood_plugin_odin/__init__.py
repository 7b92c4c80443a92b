"""ODIN scorer for oodx (Liang, Li, Srikant, ICLR 2018): temperature scaling + input perturbation."""
