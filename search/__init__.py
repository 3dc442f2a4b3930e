"""Search spaces and search over them (architecture x quantization policy)."""
