"""voidlink."""
