"""Side-by-side timing: candidates run interleaved in one process, so machine noise hits them alike."""
import statistics
import time

import torch


def interleaved_medians(steps, repeats=10, warmup=2):
    """Median seconds per call of each ``steps[name]()``, measured round-robin."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
