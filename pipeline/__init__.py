"""qcode: first-pass coding of evaluation interviews against a codebook, people in charge."""

__version__ = "0.1.0"
