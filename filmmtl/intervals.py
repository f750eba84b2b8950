"""95% intervals for every number that is judged against a bar or a peer, and the verdict they allow.

Two things move a score that say nothing about the network: which images were drawn and which holes and
noise they got. So each job is scored at ``seeds`` degradation seeds (per-image values averaged over them;
IoU's counts too), and images are resampled with replacement ``n_boot`` times for a percentile interval.
A bar then "holds" when the whole interval is on its side, "misses" when the whole interval is not, and is
"within noise" otherwise; two networks whose intervals overlap are tied. The scoring that feeds these
(``evaluate.seeded_values``, ``evaluate.bar_intervals``) lives with the scores.
"""
import torch

from filmmtl import metrics

SEEDS = 3
N_BOOT = 1000
LEVEL = 0.95


def _mean(parts):
    if isinstance(parts[0], tuple):  # IoU: (intersections, unions) per image
        return tuple(torch.stack(p).mean(0) for p in zip(*parts))
    return torch.stack(parts).mean(0)


def average_seeds(runs):
    """Per-image values averaged over seeds: [{metric: values at seed k}] -> {metric: mean values}."""
    return {name: _mean([r[name] for r in runs]) for name in runs[0]}


def _take(values, index):
    return {k: tuple(t[index] for t in v) if isinstance(v, tuple) else v[index] for k, v in values.items()}


def bootstrap(values, statistic, n_boot=N_BOOT, level=LEVEL, seed=0):
    """(low, high): the percentile interval of ``statistic(summary)`` over images resampled with replacement,
    where ``summary`` is ``metrics.summarise`` of the resampled per-image ``values``."""
    first = next(iter(values.values()))
    n = len(first[0] if isinstance(first, tuple) else first)
    draws = torch.randint(n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
    stats = torch.tensor([float(statistic(metrics.summarise({k: [v] for k, v in _take(values, i).items()})))
                          for i in draws])
    stats = stats[torch.isfinite(stats)]
    tail = (1 - level) / 2
    return float(stats.quantile(tail)), float(stats.quantile(1 - tail))


def verdict(low, high, threshold, at_least=True):
    """'holds' when the whole interval meets the bar, 'misses' when none of it does, else 'within noise'."""
    if not at_least:
        low, high, threshold = -high, -low, -threshold
    return "holds" if low >= threshold else "misses" if high < threshold else "within noise"


def ranks_with_ties(cells, lower_is_better=False):
    """Ranks of {name: (value, low, high)} where overlapping intervals tie: a network's rank is 1 + the number
    of networks whose whole interval is better than its own."""
    better = (lambda a, b: a[2] < b[1]) if lower_is_better else (lambda a, b: a[1] > b[2])
    return {name: 1 + sum(better(other, cell) for o, other in cells.items() if o != name)
            for name, cell in cells.items()}


def metric_intervals(values, n_boot=N_BOOT):
    """{job: {metric: [value, low, high]}} for every per-image metric of ``seeded_values`` (the input's own
    scores left out): what a table cell shows, and what ``ranks_with_ties`` compares."""
    out = {}
    for job, job_values in values.items():
        summary = metrics.summarise({k: [v] for k, v in job_values.items()})
        out[job] = {}
        for name, v in job_values.items():
            if name.startswith("input_"):
                continue
            low, high = bootstrap({name: v}, lambda s, name=name: s[name], n_boot)
            out[job][name] = [round(summary[name], 6), round(low, 6), round(high, 6)]
    return out
