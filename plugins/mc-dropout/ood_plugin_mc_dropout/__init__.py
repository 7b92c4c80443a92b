"""Monte-Carlo dropout scorer for oodx (Gal and Ghahramani, ICML 2016)."""
