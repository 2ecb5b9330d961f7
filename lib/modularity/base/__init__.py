"""Layer 1 of 6: what every other layer uses and which imports nothing of the package: where files
are and how they are written, float tolerances, progress bars."""
