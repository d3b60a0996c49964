"""voidlink: object and interaction removal (Netflix VOID) for compositing and editorial hosts."""

__version__ = "0.1.0"
