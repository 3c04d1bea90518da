"""What every study stands on: the cell (its identity, its runs and their record), the options every model's
training shares, the splits, fingerprints and accuracy, tuning a cell's options on the holdout, the job
plumbing of a command and of a study, and the scheduler that runs a graph of cells.

A study (kdtrack.multidomain, kdtrack.images) adds only its data, its networks and its cells. Nothing here
names a study: a study hands the spine its cells, and `compare` the figures only it can draw."""
