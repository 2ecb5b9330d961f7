"""Layer 3 of 6: what a run is and what it keeps. Its parameters (the schema), where its
results and caches live and how a cache file is verified, its manifest, and the checks made
before anything loads."""
