"""The deploykit version, in one place (no imports: every stage may read it)."""
__version__ = "0.1.0"
