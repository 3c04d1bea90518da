"""The names of a per-seed run's validation accuracies (the tracking contract), where the command line can
offer them without importing MLflow."""

ACCURACY_METRICS = ("model_val_acc", "best_val_acc", "final_val_acc")
"""A per-seed run's validation accuracy: of its logged model; at the checkpoint that its selection criterion
(--select-on on the selection split) chose, which is not the highest validation accuracy over its epochs
(the same as model_val_acc under early stopping); at its last epoch."""
