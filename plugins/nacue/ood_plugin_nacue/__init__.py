"""NAC-UE scorer for oodx (Liu, Lou, Li, Chen, Zhao, ICLR 2024): neuron activation coverage."""
