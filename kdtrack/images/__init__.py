"""The image study: CIFAR ResNets, image KD and SimKD on digits and CIFAR-100."""
