"""Training-step efficiency on CPU: achieved FLOP/s of a full step relative to a big conv2d.

For DeepLabV3-ResNet101 (VOC, 21 classes) and dense30k48.newdid6 (CamVid, 11 classes), fp32,
batch 2 at 321x321: forward + backward (mean CE over the outputs) + Adam step. FLOPs are counted
with `torch.utils.flop_counter.FlopCounterMode` over one step; the step is timed (fastest of
several). The baseline is a large well-shaped conv2d (2x256x64x64, 3x3, 256 -> 256) measured in the
same run with the same timing, in both memory formats, before and after the models (the fastest is used, the most
demanding baseline). Variants per model: contiguous (NCHW), channels_last and contiguous with a
per-tensor Adam loop; `--compile` adds channels_last under torch.compile (inductor). By default
glibc malloc keeps freed memory (`--malloc glibc` measures its defaults).

    python bench/train_step.py [--quick] [--threads N] [--clock cpu] [--breakdown] [--compile]
                               [--models NAME ...] [--malloc keep|glibc]

Prints a table and, last, one JSON line; `ratio` (its last key) = best achieved fraction for
DeepLabV3-ResNet101 over the default variants (`compiled_ratio` for the compiled one).
`--breakdown` adds the time share per op family and the conv-only fraction (1x1 convolutions on
channels_last run as matmuls, `models.common.Conv1x1`, and count as conv).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from models.build import build_model
from sweeper.naming import compose_config

MODELS = {
    "deeplabv3-resnet101": ["dataset=voc", "backbone=resnet101", "model=deeplabv3", "backbone.multi_grid=[1,2,4]",
                            "init=scratch"],
    "dense30k48.newdid6": ["dataset=camvid", "backbone=dense30k48", "backbone.stem=true",
                           "backbone.compression=1.0", "backbone.latter_pooling=false", "model.decoder=newdid6"],
}


#: the clock of `timed`: wall time, or this process's CPU time (`--clock cpu`: with `--threads 1` it
#: is the time the step itself computed, which other processes on a shared machine barely change)
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def timed(fn: Callable[[], None], repeats: int, warmup: int = 1) -> float:
    """Fastest time of `fn` in seconds after `warmup` calls (the minimum: the machine is shared,
    and other processes only ever add time)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def keep_freed_memory() -> bool:
    """glibc malloc: serve tensors up to 32 MiB from the heap and keep freed memory, instead of an
    mmap/munmap per large tensor, whose fresh pages fault (and are zeroed by the kernel) every step.
    The same as `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`. False if unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return all(libc.mallopt(option, value) == 1 for option, value in
               [(m_mmap_threshold, 32 << 20), (m_trim_threshold, (1 << 31) - 1), (m_top_pad, 64 << 20)])


def conv_peak(channels_last: bool, repeats: int) -> float:
    """FLOP/s of a 3x3 256->256 conv2d on 2x256x64x64 (forward)."""
    x = torch.randn(2, 256, 64, 64)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    flops = 2 * 2 * 256 * 64 * 64 * 256 * 9
    with torch.no_grad():
        t = timed(lambda: conv(x), repeats, warmup=2)
    return flops / t


ADAM = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}


def make_step(name: str, size: int, batch: int, layout: str = "channels_last", adam: str = "fused",
              compiled: bool = False) -> Callable[[], None]:
    """One training step (zero_grad, forward, mean CE over the outputs, backward, Adam).

    `layout`: contiguous, channels_last (input and weights) or cl-act (channels_last input, so
    activations, with contiguous weights); `adam`: fused (one kernel), foreach (a few multi-tensor
    ops) or loop (~6 ops per tensor); `compiled` runs forward + loss through `torch.compile`
    (inductor; the backward compiled by AOTAutograd)."""
    cfg = compose_config(MODELS[name])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, int(cfg.dataset.num_classes), (batch, size, size))
    if layout != "contiguous":
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, **ADAM[adam])

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outs = model(x)
        return torch.stack([F.cross_entropy(o, y, ignore_index=255) for o in outs]).mean()

    loss_fn = torch.compile(forward_loss) if compiled else forward_loss

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(x, y).backward()
        opt.step()

    return step


def make_variant(name: str, size: int, batch: int, variant: str) -> Callable[[], None]:
    """`variant`: a layout, then `+fused`/`+foreach`/`+loop` (Adam; default fused) and/or `+compile`."""
    layout, *flags = variant.split("+")
    adam = next((f for f in flags if f in ADAM), "fused")
    return make_step(name, size, batch, layout, adam, "compile" in flags)


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


#: op families of the breakdown (aten names, matched by prefix); the rest is "other"
FAMILIES = {"conv": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                     "aten::thnn_conv", "aten::_slow_conv", "aten::mkldnn_convolution_backward",
                     "aten::addmm", "aten::mm"),
            "batchnorm": ("aten::native_batch_norm", "aten::_native_batch_norm", "aten::batch_norm"),
            "relu": ("aten::relu", "aten::clamp_min", "aten::threshold_backward"),
            "cat/copy": ("aten::cat", "aten::copy_", "aten::fill_", "aten::zero_"),
            "add": ("aten::add",),
            "optimizer": ("aten::_fused_adam", "aten::_foreach", "aten::addcmul", "aten::addcdiv",
                          "aten::lerp", "aten::sqrt", "aten::mul_", "aten::div")}


def breakdown(step: Callable[[], None]) -> dict[str, float]:
    """Share of one step's self CPU time per op family (a profiled step after the timed ones)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    shares: dict[str, float] = {family: 0.0 for family in [*FAMILIES, "other"]}
    for event in prof.key_averages():
        family = next((f for f, prefixes in FAMILIES.items() if event.key.startswith(prefixes)), "other")
        shares[family] += event.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    return {family: t / total for family, t in shares.items()}


def conv_flops(step: Callable[[], None]) -> int:
    """FLOPs of the convolutions alone (forward and backward; with Conv1x1's matmuls) in one step."""
    with FlopCounterMode(display=False) as counter:
        step()
    per_op = counter.get_flop_counts().get("Global", {})
    return sum(n for op, n in per_op.items() if "convolution" in str(op) or str(op) in ("aten.mm", "aten.addmm"))


def _rounded(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 65x65, contiguous only, one timed step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=0, help="timed steps per variant (default 4; --quick 1)")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                        help="wall time, or CPU time (with --threads 1: robust on a shared machine)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also profile one step per variant: time share per op family, and the conv-only "
                             "fraction (the ceiling when every other op took no time)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="only these models (the JSON has null for the others)")
    parser.add_argument("--compile", action="store_true",
                        help="also run channels_last under torch.compile (inductor); the compilation (minutes) "
                             "is printed and excluded from the timed steps")
    parser.add_argument("--malloc", choices=["keep", "glibc"], default="keep",
                        help="keep: glibc malloc keeps freed memory (no page faults per step, see "
                             "keep_freed_memory); glibc: its defaults")
    args = parser.parse_args()
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "glibc"
    global clock
    clock = CLOCK[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or (65 if args.quick else 321)
    repeats = args.repeats or (1 if args.quick else 4)
    batch = 2
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, mkldnn={torch.backends.mkldnn.is_available()}, "
          f"batch {batch} at {size}x{size}, fp32, {args.clock} clock, malloc {malloc}")
    peaks = {f"conv {'channels_last' if cl else 'contiguous'}": conv_peak(cl, repeats + 2) for cl in (False, True)}
    rows = []
    profiles: list[tuple[str, str, dict[str, float], float]] = []
    variants = ["contiguous"] if args.quick else ["contiguous", "channels_last", "contiguous+loop"]
    variants += ["channels_last+compile"] if args.compile else []
    compile_s: dict[str, float] = {}
    for name in args.models:
        flops = 0
        for variant in variants:
            step = make_variant(name, size, batch, variant)
            if "compile" in variant:
                t0 = time.perf_counter()
                step()  # compiles forward and backward
                compile_s[name] = time.perf_counter() - t0
                print(f"  {name} {variant}: first step (compilation) {compile_s[name]:.0f} s wall", flush=True)
            else:
                flops = flops or count_flops(step)  # the same FLOPs in every variant of a model
            t = timed(step, repeats, warmup=1 if args.quick else 2)
            rows.append((name, variant, flops, t))
            if args.breakdown and "compile" not in variant:
                shares, cflops = breakdown(step), conv_flops(step)
                profiles.append((name, variant, shares, cflops / (t * shares["conv"]) if shares["conv"] else 0.0))
    for cl in (False, True):
        peaks[f"conv {'channels_last' if cl else 'contiguous'} (after)"] = conv_peak(cl, repeats + 2)
    peak = max(peaks.values())
    for k, v in peaks.items():
        print(f"  baseline {k:32s} {v / 1e9:8.1f} GFLOP/s")
    print(f"  baseline used (max)                      {peak / 1e9:8.1f} GFLOP/s")
    print(f"{'model':22s} {'variant':24s} {'GFLOP/step':>11s} {'s/step':>8s} {'GFLOP/s':>8s} {'fraction':>9s}")
    best: dict[str, float] = {}
    for name, variant, flops, t in rows:
        frac = flops / t / peak
        key = name + (" compiled" if "compile" in variant else "")
        best[key] = max(best.get(key, 0.0), frac)
        print(f"{name:22s} {variant:24s} {flops / 1e9:11.1f} {t:8.2f} {flops / t / 1e9:8.1f} {frac:9.2f}")
    for name, layout, shares, conv_rate in profiles:
        parts = "  ".join(f"{family} {share:4.0%}" for family, share in shares.items())
        print(f"{name:22s} {layout:24s} {parts}  | conv-only fraction {conv_rate / peak:4.2f}")
    result: dict[str, object] = {"dense30k48_newdid6": _rounded(best.get("dense30k48.newdid6"))}
    if args.compile:
        result |= {"compiled_dense30k48_newdid6": _rounded(best.get("dense30k48.newdid6 compiled")),
                   "compiled_ratio": _rounded(best.get("deeplabv3-resnet101 compiled")),
                   "compile_s": {name: round(v) for name, v in compile_s.items()}}
    result |= {"baseline_gflops": round(peak / 1e9, 1), "size": size, "threads": torch.get_num_threads(),
               "clock": args.clock, "malloc": malloc, "ratio": _rounded(best.get("deeplabv3-resnet101"))}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
