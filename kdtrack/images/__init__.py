"""The image study: CIFAR ResNets, image KD and SimKD on digits and CIFAR-100."""

SEED_WORKER_IMPORTS = ("kdtrack.images.training", "torch._dynamo", "sklearn.datasets", "sklearn.model_selection")
"""What a process that trains image seeds (kdtrack.images.training) imports before its first: the training
(torch and the engine), and what training imports on first use: torch._dynamo for the first optimizer
(torch.optim's, 1.0-1.4 s of CPU), scikit-learn to read digits (~1 s). Named here, where the command line reads it
without importing torch, so that the seed workers' fork server can start at once (kdtrack.spine.workers)."""
