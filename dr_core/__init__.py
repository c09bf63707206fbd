"""dr_core: the library behind the dense-retrieval workflow (data, training, encoding, search, evaluation)."""

__version__ = "0.1.0"
