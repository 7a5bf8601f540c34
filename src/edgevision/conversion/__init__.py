"""Model format converters, each step checked for numerical parity."""
