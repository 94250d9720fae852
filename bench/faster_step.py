"""What a 1.3x faster training step than diffusers' UNet2DModel would take: variants of our UNet, measured side by side.

`train_throughput.py` shows that our `UNet` and diffusers' `UNet2DModel` laid out alike train at the same speed: they
run the same oneDNN kernels on the same FLOPs. This script measures, in the same interleaved rounds and against the
same diffusers twin, the ways a step could get faster:

  - conv first: `Upsample` convolves at the coarse resolution and then upsamples (nearest), instead of upsampling and
    then convolving. The same weights, a quarter of that convolution's FLOPs. A different network.
  - conv first, narrow: as above, and that convolution also maps to the finer level's width, so the decoder's first
    block there takes the skip plus a map of its own width. Fewer FLOPs and fewer parameters. A different network.
  - channels_last: our UNet (as shipped) in the channels_last memory format, which oneDNN's convolutions prefer for
    narrow maps. The same network.
  - channels_last, conv first, GroupNorm as affine only: not a network but a bound. PyTorch's channels_last GroupNorm
    is several times slower on the CPU than its contiguous one; replacing every GroupNorm by its affine part (a
    multiply-add) shows what channels_last could give with a GroupNorm that cost nothing extra. A last table times
    a 3x3 convolution and a GroupNorm alone in both formats, at the widths of the first level of each setting.

A training step is forward, MSE against eps, backward and an AdamW step, float32, on the CPU, as in
`train_throughput.py`; the ratio is diffusers' time over ours (> 1: ours is faster): the median over rounds of the
per-round ratio, and best against best. FLOPs are counted by FlopCounterMode.

Last, a bound that needs no timing: the share of FLOPs in convolutions, and how many pixels each convolution weight is
applied to per image. If every convolution weight of diffusers' layout ran at the coarsest level instead, with the
other FLOPs unchanged, a step would need this many times fewer FLOPs: the most any network with that many
convolution weights at these widths could gain over diffusers' layout at equal kernel efficiency.

Run from the repository root:  python bench/faster_step.py [--threads 1] [--quick]
"""
import argparse, os, sys, time, platform, pathlib, statistics, warnings
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # train_throughput.py, beside this file

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torch.nn.attention import sdpa_kernel, SDPBackend
import diffusers
from train_throughput import diffusers_twin, n_params, Side, interleaved, call_ours, call_diffusers, fmt_rate
from diffnb.unet import UNet, UNET_CONFIGS, Upsample

warnings.filterwarnings('ignore', category=FutureWarning)


class ConvFirstUpsample(Upsample):
    "Convolve at the coarse resolution, then double H and W by nearest-neighbour upsampling."
    def forward(self, x): return F.interpolate(self.conv(x), scale_factor=2.0, mode='nearest')


def conv_first(model: UNet) -> UNet:
    "The same weights, each `Upsample` convolving first."
    for m in model.modules():
        if type(m) is Upsample: m.__class__ = ConvFirstUpsample
    return model


def conv_first_narrow(model: UNet) -> UNet:
    "Each `Upsample` convolves first, to the finer level's width; the block after it takes that width plus the skip."
    c, up = model.config, model.up
    widths = [c['channels'] * m for m in c['channel_mults']]
    ups = [i for i, layer in enumerate(up) if isinstance(layer, Upsample)]  # coarsest first
    for k, i in enumerate(ups):
        coarse, fine = widths[-1 - k], widths[-2 - k]
        up[i] = ConvFirstUpsample(coarse); up[i].conv = nn.Conv2d(coarse, fine, 3, padding=1)
        block = up[i + 1]
        skip = block.res.conv1.in_channels - coarse
        up[i + 1] = model._block(fine + skip, block.res.conv1.out_channels, block.attn is not None)
    return model


def to_channels_last(side: Side) -> Side:
    "The side's model, batch and targets in channels_last memory format, with a fresh optimizer."
    side.model.to(memory_format=torch.channels_last)
    side.x, side.eps = (z.contiguous(memory_format=torch.channels_last) for z in (side.x, side.eps))
    side.opt = torch.optim.AdamW(side.model.parameters(), lr=1e-4)
    return side


class AffineOnly(nn.Module):
    "GroupNorm's affine part alone: x * weight + bias per channel (a stand-in for a bound, not a normalisation)."
    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x): return torch.addcmul(self.bias[:, None, None], x, self.weight[:, None, None])


def affine_only_norms(model: nn.Module) -> nn.Module:
    "Replace every GroupNorm by `AffineOnly`."
    for name, m in list(model.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.GroupNorm): setattr(m, child_name, AffineOnly(child))
    return model


def conv_bound(model: nn.Module, call, shape: tuple, n_levels: int) -> dict:
    "Convolutions' share of forward FLOPs, pixels per conv weight, and the FLOP ratio if all ran at the coarsest level."
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = sum(m.weight.numel() for m in convs)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc, torch.no_grad():
        call(model.eval(), torch.randn(1, *shape), torch.tensor([500]), torch.tensor([3]))
    total = fc.get_total_flops()
    conv = sum(v for k, v in fc.get_flop_counts()['Global'].items() if 'convolution' in str(k))
    coarsest = (shape[1] // 2 ** (n_levels - 1)) ** 2
    floor = total - conv + 2 * weights * coarsest
    return dict(conv_share=conv / total, px_per_weight=conv / 2 / weights, coarsest=coarsest, max_gain=total / floor)


def fwd_bwd_time(layer: nn.Module, x: torch.Tensor, reps: int) -> float:
    "Best time of forward + backward of `layer` on `x` (which requires grad), after a warm-up."
    g = torch.randn_like(layer(x))
    def step():
        x.grad = None; layer.zero_grad(set_to_none=True); layer(x).backward(g)
    step()
    return min(_timed(step) for _ in range(reps))


def _timed(f) -> float:
    t0 = time.perf_counter(); f(); return time.perf_counter() - t0


def kernel_table(shapes: list, reps: int) -> list:
    "Forward + backward of a 3x3 convolution and of a GroupNorm, contiguous against channels_last, per shape."
    rows = []
    for B, C, H, G in shapes:
        for name, layer in (('conv 3x3', nn.Conv2d(C, C, 3, padding=1)), (f'GroupNorm({G})', nn.GroupNorm(G, C))):
            t = {}
            for fmt in (torch.contiguous_format, torch.channels_last):
                layer = layer.to(memory_format=fmt)
                x = torch.randn(B, C, H, H).contiguous(memory_format=fmt).requires_grad_()
                t[fmt] = fwd_bwd_time(layer, x, reps)
            rows.append((f"{name}, {B}x{C}x{H}x{H}", t[torch.contiguous_format], t[torch.channels_last]))
    return rows


VARIANTS = {
    'ours, as shipped': lambda m: m,
    'conv first': conv_first,
    'conv first, narrow': conv_first_narrow,
    'channels_last': lambda m: m,
    'channels_last, conv first, GroupNorm as affine only (bound)': lambda m: affine_only_norms(conv_first(m)),
}
CHANNELS_LAST = ('channels_last', 'channels_last, conv first, GroupNorm as affine only (bound)')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--quick', action='store_true', help='a smoke run: small batches, few rounds')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = [('digits', 128, 15), ('book32', 32, 5)] if not args.quick else [('digits', 16, 2), ('book32', 2, 1)]
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={torch.get_num_threads()}, "
          f"load average {load0[0]:.2f} at the start\n")
    for name, batch, rounds in settings:
        c = UNET_CONFIGS[name]
        shape = (c['in_channels'], c['image_size'], c['image_size'])
        torch.manual_seed(0); ref = Side(diffusers_twin(name), call_diffusers, batch, shape)
        sides = {}
        for variant, make in VARIANTS.items():
            torch.manual_seed(0); side = Side(make(UNet.from_config_name(name)), call_ours, batch, shape)
            sides[variant] = to_channels_last(side) if variant in CHANNELS_LAST else side
        flops = {k: s.train_flops() for k, s in sides.items()} | {'diffusers': ref.train_flops()}
        times = interleaved({'diffusers': ref.train_step} | {k: s.train_step for k, s in sides.items()}, rounds)
        p_ref = n_params(ref.model)
        print(f"{name}: {'x'.join(map(str, shape))} images, batch {batch}, {rounds} rounds; diffusers' UNet2DModel: "
              f"{p_ref / 1e6:.3f}M parameters, {batch / min(times['diffusers']):.1f} images/s")
        head = (f"  {'variant':60} | {'params / diffusers':>18} | {'FLOPs: diffusers / ours':>23} | "
                f"{'images/s':>8} | {'ratio median':>12} | {'ratio best':>10}")
        print(head); print('  ' + '-' * (len(head) - 2))
        for k, s in sides.items():
            med = statistics.median(d / o for o, d in zip(times[k], times['diffusers']))
            print(f"  {k:60} | {n_params(s.model) / p_ref:18.3f} | {flops['diffusers'] / flops[k]:23.3f} | "
                  f"{fmt_rate(batch / min(times[k])):>8} | {med:12.2f} | "
                  f"{min(times['diffusers']) / min(times[k]):10.2f}")
        b = conv_bound(ref.model, call_diffusers, shape, len(c['channel_mults']))
        print(f"  bound: convolutions are {b['conv_share']:.0%} of diffusers' forward FLOPs; each conv weight is applied "
              f"at {b['px_per_weight']:.1f} pixels per image on average,\n  against {b['coarsest']} at the coarsest "
              f"level: with every conv weight there, a step would need {b['max_gain']:.2f}x fewer FLOPs\n")
    shapes = [(128, 24, 8, 8), (32, 64, 32, 32)] if not args.quick else [(16, 24, 8, 8), (2, 64, 32, 32)]
    print("channels_last against the default (contiguous) format: forward + backward, ms, best of the repetitions")
    print(f"  {'layer, input':34} | {'contiguous':>10} | {'channels_last':>13} | {'contiguous / channels_last':>26}")
    for name, a, b in kernel_table(shapes, 3 if args.quick else 20):
        print(f"  {name:34} | {a * 1e3:10.2f} | {b * 1e3:13.2f} | {a / b:26.2f}")
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end, on {os.cpu_count()} CPUs")


if __name__ == '__main__':
    t0 = time.perf_counter()
    main()
    print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s")
