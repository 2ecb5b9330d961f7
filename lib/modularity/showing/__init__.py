"""Layer 6 of 6: what a person sees. Charts (Altair, offline) and the ``modularity`` command line."""
