"""What every benchmark prints beside its table: machine, its speed that
day, versions, date."""

import datetime
import os
import platform
import resource
import statistics
import time
from functools import partial
from pathlib import Path


def environment():
    """A Markdown paragraph naming the machine, its speed now
    (:func:`speed_yardstick`), library versions and date."""
    import numpy
    import sklearn
    import timm
    import torch

    import skanomaly

    cpu = cpuinfo("model name") or platform.processor() or platform.machine()
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}, {'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}. "
        f"Python {platform.python_version()}, skanomaly {skanomaly.__version__}, "
        f"torch {torch.__version__}, timm {timm.__version__}, scikit-learn "
        f"{sklearn.__version__}, numpy {numpy.__version__}. "
        f"Date: {datetime.date.today().isoformat()}. {speed_yardstick()}"
    )


def cpuinfo(field):
    """The value of ``field`` for the first processor in /proc/cpuinfo
    (Linux), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def speed_yardstick(repeats=5, calls=20):
    """A sentence giving the images/s of the bare Lite0 forward pass (224 px,
    batch 1, channels-last, every level), measured now.

    The shared 2-core machines that write these pages have run the same
    code at up to half their usual speed on some days. Times within one
    page compare as they are; across pages written on different days, only
    roughly after scaling by this yardstick, as a slow day need not slow
    every method alike (on 2026-12-06 the patch searches slowed more than
    the forward pass). It is the "bare forward, channels_last" row of
    throughput.md at batch size 1, measured the same way (median of
    ``repeats``).
    """
    import torch

    x = torch.rand(calls, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    rate = calls / median_time(partial(bare_forward, bare_network(), x, 1), repeats)
    return (
        f"Speed yardstick: the bare tf_efficientnet_lite0 forward pass ran at "
        f"{rate:.0f} images/s (224 px, batch 1, channels-last) as this page was "
        "written; scaling by it compares times with pages written on other days only roughly."
    )


def bare_network(backbone="tf_efficientnet_lite0"):
    """The detector's network on a CPU without the detector: every level of
    ``backbone``, in eval mode and channels-last memory layout, the layout
    the detector runs it in. The "bare forward" rows time it."""
    import torch

    from skanomaly.backbone import EfficientNetLevels, load_backbone

    return EfficientNetLevels(load_backbone(backbone)).eval().to(memory_format=torch.channels_last)


def bare_forward(network, x, batch_size, dtype=None):
    """The bare forward pass of every level of ``network`` over ``x`` in
    batches, under CPU autocast to ``dtype`` (None: float32)."""
    import torch

    levels = list(range(len(network.level_names)))
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        for start in range(0, len(x), batch_size):
            network(x[start : start + batch_size], levels)


def median_time(function, repeats):
    """Median wall time of ``function()`` over ``repeats`` runs, after a warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_calls(function, items, size):
    """``function`` over ``items`` in calls of ``size`` items each (1: one
    item per call, as an inspection line scores images); its results."""
    return [function(items[i : i + size]) for i in range(0, len(items), size)]


def interleaved_median_times(functions, repeats, settle=0.5):
    """Median wall time of each of ``functions`` (a dict), timed in turn.

    Each repeat runs every function once, so a slow spell of a shared
    machine slows all of them alike instead of one; every function is
    warmed up first. A pause before each run lets the worker threads of the
    previous one (BLAS and OpenMP threads spin for a while after their work)
    go idle, so that no function pays for its predecessor.
    """
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            time.sleep(settle)
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def publish(text, out=None):
    """Print a benchmark's Markdown and write it to ``out`` (if given)."""
    print(text)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def per_seed(values):
    """Each seed's value and their mean, ``"a / b / c (mean)"``; a seed
    without a value (None) shows "—" and stays out of the mean."""
    import numpy as np

    known = [v for v in values if v is not None]
    shown = " / ".join("—" if v is None else f"{v:.3f}" for v in values)
    return shown + (f" ({np.mean(known):.3f})" if known else "")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
