"""Class-conditional Gaussian mixture scorer for oodx."""
