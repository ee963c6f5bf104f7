"""Studies, run as modules from the repository root (see README.md in each folder)."""
