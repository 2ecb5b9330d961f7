"""Layer 2 of 6: the method. The tasks, the model and its sites, the passes on either backend,
scoring, attribution, overlap, statistics, ablation, the localizer and the study's released
results. Computations take tensors and tables and return them; the few modules that touch files
read formats the method defines (model weights, the study's task files and matrix CSVs), never a
run's result folder."""
