"""Stand-ins for host applications' Python modules (put this folder on sys.path to import them)."""
