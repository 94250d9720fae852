"""Training and inference throughput: diffnb's `UNet` against diffusers' `UNet2DModel`, and achieved GFLOP/s.

Two settings, each with the same layout on both sides and parameter counts within 5% (checked; in practice within 0.1%):
  - digits: our 'digits' configuration (two levels of widths 24 and 48, attention in the middle, 10 classes),
    1 x 8 x 8 images, batch 128;
  - book32: our 'book32' configuration (widths 64, 128, 128, two blocks per level, attention at 16x16 and 8x8,
    dropout 0.1, 10 classes), 3 x 32 x 32 images, batch 32.
diffusers' side is a `UNet2DModel` with the same widths, blocks, GroupNorm groups, heads, dropout, class embedding and
scale-shift time conditioning.

A training step is forward, MSE against eps, backward and an AdamW step, in float32 on the CPU; inference is one
forward pass under no_grad in eval mode. Each round times, back to back: a large fp32 matmul (this machine's practical
fp32 limit), a training step of each model, and a forward pass of each. Rounds are interleaved after a warm-up; the
table gives the best time of each, and the median over rounds of the per-round ratio (the two sides of a ratio run
seconds apart, so a change in the machine's load moves both). FLOPs of forward + backward are counted with
torch.utils.flop_counter.FlopCounterMode (convolutions, matrix products and attention; not norms, activations or the
optimizer), with attention run by the math backend while counting, because the counter does not see inside the CPU's
fused attention kernel. Last, torch.profiler splits one training step of each model by kind of operation.

The thread count is fixed (default 1) and printed. On a shared machine the numbers move with other people's load,
which is printed too.

Run from the repository root:  python bench/train_throughput.py [--threads 1] [--quick] [--no-profile]
"""
import argparse, contextlib, os, sys, time, platform, pathlib, statistics, warnings
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clean checkout, no install needed

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torch.nn.attention import sdpa_kernel, SDPBackend
import diffusers
from diffusers import UNet2DModel
from diffnb.unet import UNet, UNET_CONFIGS

warnings.filterwarnings('ignore', category=FutureWarning)


def diffusers_twin(name: str) -> UNet2DModel:
    "A diffusers UNet2DModel laid out like our named configuration (the same blocks, widths, groups and heads)."
    c = {**UNet.from_config_name(name).config}
    widths = [c['channels'] * m for m in c['channel_mults']]
    sizes = [c['image_size'] // 2 ** i for i in range(len(widths))]
    attn = [s in c['attn_resolutions'] for s in sizes]
    return UNet2DModel(
        sample_size=c['image_size'], in_channels=c['in_channels'], out_channels=c['in_channels'],
        block_out_channels=tuple(widths), layers_per_block=c['n_blocks'], norm_num_groups=c['groups'],
        down_block_types=tuple('AttnDownBlock2D' if a else 'DownBlock2D' for a in attn),
        up_block_types=tuple('AttnUpBlock2D' if a else 'UpBlock2D' for a in reversed(attn)),
        attention_head_dim=widths[-1] // c['n_heads'], dropout=c['dropout'],
        num_class_embeds=c['n_classes'] + 1, resnet_time_scale_shift='scale_shift')  # + 1: the null class, as ours


def n_params(m): return sum(p.numel() for p in m.parameters())


class Side:
    "One model with its batch: a training step and a forward pass as zero-argument functions."
    def __init__(self, model, call, batch, shape, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.eps = torch.randn(batch, *shape, generator=g), torch.randn(batch, *shape, generator=g)
        self.t, self.y = torch.randint(0, 1000, (batch,), generator=g), torch.randint(0, 10, (batch,), generator=g)
        self.model, self.call, self.batch = model, call, batch
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss(self): return F.mse_loss(self.call(self.model, self.x, self.t, self.y), self.eps)

    def train_step(self):
        self.model.train()
        loss = self.loss()
        self.opt.zero_grad(set_to_none=True); loss.backward(); self.opt.step()

    @torch.no_grad()
    def infer(self):
        self.model.eval()
        self.call(self.model, self.x, self.t, self.y)

    def train_flops(self):
        "FLOPs of forward + backward of one training step."
        self.model.train()
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc: self.loss().backward()
        self.opt.zero_grad(set_to_none=True)
        return fc.get_total_flops()


def block_shares(model, shape) -> dict:
    "Share of each top-level block (conv_in, down.i, mid.i, up.i, out) in the forward FLOPs of one image."
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, depth=3) as fc, torch.no_grad():
        model.eval()(torch.randn(1, *shape), torch.tensor([500]), torch.tensor([3]))
    total, out = fc.get_total_flops(), {}
    for name, counts in fc.get_flop_counts().items():
        parts = name.split('.')[1:]
        if parts and (len(parts) == 2 if parts[0] in ('down', 'mid', 'up') else len(parts) == 1):
            out['.'.join(parts)] = sum(counts.values()) / total
    return out


def fmt_rate(v): return f"{v:7.1f}" if v < 100 else f"{v:7.0f}"


def call_ours(m, x, t, y): return m(x, t, y)
def call_diffusers(m, x, t, y): return m(x, t, class_labels=y, return_dict=False)[0]


def interleaved(fns: dict, rounds: int) -> dict:
    "Times of each function in every round, after one warm-up call each; the functions alternate within a round."
    for f in fns.values(): f()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter(); f(); times[k].append(time.perf_counter() - t0)
    return times


def matmul_fn(n):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2 * n ** 3


KINDS = (('autograd engine', ('autograd::engine', 'accumulategrad')), ('convolution', ('conv',)),
         ('matmul / linear', ('addmm', 'aten::mm', 'aten::bmm', 'aten::linear')),
         ('attention', ('scaled_dot_product', 'softmax', 'attention')), ('group norm', ('group_norm',)),
         ('SiLU', ('silu',)), ('elementwise, copies, cat', ('aten::',)))
OTHER, OPTIMIZER = 'Python and other', 'optimizer (AdamW, zero_grad)'


def kind_of(name: str) -> str:
    for kind, keys in KINDS:
        if any(k in name.lower() for k in keys): return kind
    return OTHER


def in_optimizer(event) -> bool:
    while event is not None:
        if event.name.startswith('Optimizer.'): return True
        event = event.cpu_parent
    return False


@contextlib.contextmanager
def quiet_stderr():
    "Silence the profiler's C++ start/stop lines (file descriptor 2) for the duration."
    sys.stderr.flush(); saved = os.dup(2)
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 2)
        try: yield
        finally: os.dup2(saved, 2); os.close(saved)


def profile_kinds(side: Side, steps: int) -> dict:
    "Self CPU time per step (s) of each kind of operation in a training step; the optimizer's ops count as its own."
    from torch.profiler import profile, ProfilerActivity
    side.train_step()
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(steps): side.train_step()
    out = {}
    for e in p.events():
        kind = OPTIMIZER if in_optimizer(e) else kind_of(e.name)
        out[kind] = out.get(kind, 0.0) + e.self_cpu_time_total / 1e6 / steps
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--quick', action='store_true', help='a smoke run: small batches, few rounds')
    ap.add_argument('--no-profile', action='store_true', help='skip the torch.profiler breakdown')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = [('digits', 128, 20), ('book32', 32, 3)] if not args.quick else [('digits', 16, 3), ('book32', 2, 1)]
    mm_n = 1024 if args.quick else 2048
    mm, mm_flops = matmul_fn(mm_n)
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads={torch.get_num_threads()}")
    print(f"float32 on the CPU of a shared machine ({os.cpu_count()} CPUs, other people's jobs running): "
          f"load average {load0[0]:.2f} at the start\n")

    rows = {}
    for name, batch, rounds in settings:
        c = UNET_CONFIGS[name]
        shape = (c['in_channels'], c['image_size'], c['image_size'])
        torch.manual_seed(0); ours = UNet.from_config_name(name)
        torch.manual_seed(0); ref = diffusers_twin(name)
        p_ours, p_ref = n_params(ours), n_params(ref)
        assert abs(p_ours / p_ref - 1) < 0.05, (name, p_ours, p_ref)
        a, b = Side(ours, call_ours, batch, shape), Side(ref, call_diffusers, batch, shape)
        flops = {'ours': a.train_flops(), 'diffusers': b.train_flops()}
        times = interleaved({'matmul': mm, 'train ours': a.train_step, 'train diffusers': b.train_step,
                             'infer ours': a.infer, 'infer diffusers': b.infer}, rounds)
        best = {k: min(v) for k, v in times.items()}
        med_ratio = {m: statistics.median(r / o for o, r in zip(times[f'{m} ours'], times[f'{m} diffusers']))
                     for m in ('train', 'infer')}
        rows[name] = dict(batch=batch, rounds=rounds, shape=shape, p=(p_ours, p_ref), best=best, med=med_ratio,
                          flops=flops, sides=(a, b))

    print("Throughput, images/s (best of the rounds); ratio = ours / diffusers (> 1: ours is faster)")
    head = (f"{'setting':8} | {'image':9} | {'batch':>5} | {'params ours / diffusers':>23} | {'mode':5} | "
            f"{'ours':>7} | {'diffusers':>9} | {'ratio best':>10} | {'ratio median':>12}")
    print(head); print('-' * len(head))
    for name, r in rows.items():
        for m in ('train', 'infer'):
            o, d = r['batch'] / r['best'][f'{m} ours'], r['batch'] / r['best'][f'{m} diffusers']
            print(f"{name:8} | {'x'.join(map(str, r['shape'])):9} | {r['batch']:5} | "
                  f"{r['p'][0] / 1e6:9.3f}M / {r['p'][1] / 1e6:.3f}M | {m:5} | {fmt_rate(o)} | {fmt_rate(d):>9} | "
                  f"{o / d:10.2f} | {r['med'][m]:12.2f}")
    rounds = ', '.join(f"{n} {r['rounds']}" for n, r in rows.items())
    print(f"(rounds: {rounds}; a training step is forward, backward and AdamW; inference is a no_grad forward)\n")

    print("Achieved GFLOP/s of a training step (FLOPs of forward + backward, counted by FlopCounterMode, over the "
          f"best step time,\nwhich also includes the AdamW update) against a {mm_n} x {mm_n} fp32 matmul timed in the "
          "same rounds")
    head = (f"{'setting':8} | {'GFLOP/step':>10} | {'ours GFLOP/s':>12} | {'diffusers GFLOP/s':>17} | "
            f"{'matmul GFLOP/s':>14} | {'ours / matmul':>13} | {'diffusers / matmul':>18}")
    print(head); print('-' * len(head))
    for name, r in rows.items():
        peak = mm_flops / r['best']['matmul'] / 1e9
        go, gd = (r['flops'][k] / r['best'][f'train {k}'] / 1e9 for k in ('ours', 'diffusers'))
        print(f"{name:8} | {r['flops']['ours'] / 1e9:10.2f} | {go:12.1f} | {gd:17.1f} | {peak:14.1f} | "
              f"{go / peak:13.0%} | {gd / peak:18.0%}")
    same = all(r['flops']['ours'] == r['flops']['diffusers'] for r in rows.values())
    per_image = ', '.join(f"{n} {r['flops']['ours'] / r['batch'] / 1e6:.1f} MFLOP" for n, r in rows.items())
    print(f"(the FLOP counts of the two models are {'identical' if same else 'different'} in every setting; "
          f"per image: {per_image})")

    print("\nForward FLOPs of our UNet by block (share of one image's; blocks over 8%, in the order they run):")
    for name, r in rows.items():
        model = r['sides'][0].model
        shares = block_shares(model, r['shape'])
        print(f"  {name}: " + ', '.join(f"{k} ({type(model.get_submodule(k)).__name__}) {v:.0%}"
                                        for k, v in shares.items() if v > 0.08))

    if not args.no_profile:
        print("\nWhere a training step's time goes (torch.profiler, self CPU time per step, ms, and share)")
        for name, r in rows.items():
            prof = [profile_kinds(s, 3 if name == 'digits' else 1) for s in r['sides']]
            kinds = [k for k, _ in KINDS] + [OPTIMIZER, OTHER]
            tot = [sum(p.values()) for p in prof]
            print(f"{name}:")
            for k in kinds:
                o, d = (p.get(k, 0.0) for p in prof)
                print(f"  {k:32} | ours {o * 1e3:7.1f} ({o / tot[0]:4.0%}) | "
                      f"diffusers {d * 1e3:7.1f} ({d / tot[1]:4.0%})")
            print(f"  {'total':32} | ours {tot[0] * 1e3:7.1f}        | diffusers {tot[1] * 1e3:7.1f}")

    print()
    for name, r in rows.items():
        ratio, best = r['med']['train'], r['best']['train diffusers'] / r['best']['train ours']
        print(f"{name}: training ratio {ratio:.2f} (median over rounds; {best:.2f} best against best): "
              f"{'meets' if ratio >= 1.3 else 'misses'} the goal >= 1.3; inference ratio {r['med']['infer']:.2f}")
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end, on {os.cpu_count()} CPUs")


if __name__ == '__main__':
    t0 = time.perf_counter()
    main()
    print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s")
