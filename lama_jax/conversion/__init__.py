"""Conversion: official PyTorch state dicts to our variables (generator and discriminator)."""
