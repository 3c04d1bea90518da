"""One SGD step of a CIFAR ResNet on a batch of 64, in the default memory format and channels-last, in turn.

    .venv/bin/python benchmarks/image_step.py ARCH SIZE CHANNELS      # e.g. resnet8x4 32 3, or resnet8x4 8 1

Prints the wall and CPU milliseconds per step (15 steps after 3 to warm up) twice for each format; set
OMP_NUM_THREADS to choose torch's threads. Quoted in docs/image-speed.md; run by hand.
"""
import sys
import time

import torch
import torch.nn.functional as F

from kdtrack.models import NetworkConfig, build_network

STEPS = 15


def main() -> None:
    arch, size, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    x, y = torch.randn(64, channels, size, size), torch.randint(0, 10, (64,))
    for memory_format in ("default", "channels-last") * 2:
        model, batch = build_network(NetworkConfig(arch, 10, channels), 0), x
        if memory_format == "channels-last":
            model, batch = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        for step in range(3 + STEPS):
            if step == 3:
                wall, cpu = time.perf_counter(), time.process_time()
            loss = F.cross_entropy(model(batch), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"{memory_format}, {torch.get_num_threads()} thread(s): {(time.perf_counter() - wall) / STEPS * 1000:.1f} ms "
              f"wall, {(time.process_time() - cpu) / STEPS * 1000:.1f} ms CPU per step", flush=True)


if __name__ == "__main__":
    main()
