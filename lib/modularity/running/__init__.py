"""Layer 5 of 6: running the stages. papermill over the stage notebooks, the book's own pages
and table of contents, what a run will cost (``modularity plan``), and the precision check."""
