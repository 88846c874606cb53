"""edgegov: a governance runtime for cyber-physical controllers."""

__version__ = "0.1.0"
