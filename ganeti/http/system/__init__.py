"""Operating-system helpers: which process is which, and reaping children."""
