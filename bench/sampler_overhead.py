"""Sampler overhead: diffnb's sampling loop against a plain loop around diffusers' schedulers.

Both sides drive the same model for the same number of steps from the same x_T, with identically seeded
generators, one thread, after a warm-up, interleaved, best of several runs. Two models:
  - a zero-cost model (returns zeros): the time per step is the sampler's own overhead;
  - a tiny conv net: the end-to-end time a user would see.

Run from the repository root:  python bench/sampler_overhead.py
"""
import sys, time, platform, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clean checkout, no install needed

import torch
from torch import nn
import diffusers
from diffusers import DDPMScheduler, DDIMScheduler
from diffnb.forward import NoiseSchedule
from diffnb.sampling import DDPMSampler, sample
try:
    from diffnb.ddim import DDIMSampler
except ImportError as e:
    DDIMSampler = None
    print(f"note: diffnb.ddim is not available ({e}); the DDIM rows are skipped\n")

N_STEPS, REPEATS = 100, 50
SMALL, IMAGE = (4, 2), (4, 3, 16, 16)  # overhead is measured at both; the tiny net runs on IMAGE


class TinyNet(nn.Module):
    "A small conv denoiser with an additive time embedding: 3 -> 32 -> 3 channels."
    def __init__(self, channels: int = 3, hidden: int = 32, n_train: int = 1000):
        super().__init__()
        self.emb = nn.Embedding(n_train, hidden)
        self.conv1, self.conv2 = nn.Conv2d(channels, hidden, 3, padding=1), nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x, t, cond=None):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t  # the diffusers loop passes a 0-d t, as its pipelines do
        return self.conv2(nn.functional.silu(self.conv1(x) + self.emb(t)[:, :, None, None]))


def zero_model(x, t, cond=None): return torch.zeros_like(x)


def run_ours(model, sampler, xT, seed):
    return sample(model, sampler, xT.shape, N_STEPS, xT=xT, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run_diffusers(model, scheduler, xT, seed):
    g = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(N_STEPS)
    x = xT
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t, None), t, x, generator=g).prev_sample
    return x


def best_times(fns, repeats=REPEATS):
    "Best wall time of each function, warmed up and interleaved."
    for f in fns: f()
    best = [float('inf')] * len(fns)
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter(); f(); best[i] = min(best[i], time.perf_counter() - t0)
    return best


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    schedule = NoiseSchedule.from_name('linear')
    pairs = [('DDPM', DDPMSampler(schedule, clip_x0=True), DDPMScheduler())]  # both: fixed_small, clip, leading
    if DDIMSampler is not None:  # both: eta = 0, clip without re-deriving eps, leading, set_alpha_to_one
        pairs.append(('DDIM', DDIMSampler(schedule, eta=0.0, clip_x0=True, rederive_eps=False), DDIMScheduler()))
    net = TinyNet().eval()
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}, threads={torch.get_num_threads()}")
    print(f"{N_STEPS} steps, best of {REPEATS} interleaved runs after a warm-up\n")

    print("Per-step overhead: a zero-cost model (returns zeros), time per step")
    print(f"{'sampler':8} | {'x shape':14} | {'ours':>9} | {'diffusers':>9} | {'ratio':>5}")
    print('-' * 58)
    overhead = {}
    for name, ours, ref in pairs:
        for shape in (SMALL, IMAGE):
            xT = torch.randn(shape, generator=torch.Generator().manual_seed(1))
            o, r = best_times([lambda: run_ours(zero_model, ours, xT, 0), lambda: run_diffusers(zero_model, ref, xT, 0)])
            o, r = o / N_STEPS * 1e6, r / N_STEPS * 1e6
            overhead[name, shape] = o / r
            print(f"{name:8} | {str(shape):14} | {o:6.1f} us | {r:6.1f} us | {o / r:5.2f}")

    print(f"\nEnd to end: a tiny conv net (3 -> 32 -> 3 channels) on x of shape {IMAGE}, {N_STEPS} steps")
    print(f"{'sampler':8} | {'ours':>9} | {'diffusers':>9} | {'ratio':>5} | max |ours - diffusers|")
    print('-' * 62)
    e2e = {}
    xT = torch.randn(IMAGE, generator=torch.Generator().manual_seed(1))
    for name, ours, ref in pairs:
        diff = (run_ours(net, ours, xT, 0) - run_diffusers(net, ref, xT, 0)).abs().max().item()  # the same work
        o, r = best_times([lambda: run_ours(net, ours, xT, 0), lambda: run_diffusers(net, ref, xT, 0)])
        e2e[name] = o / r
        print(f"{name:8} | {o * 1e3:6.1f} ms | {r * 1e3:6.1f} ms | {o / r:5.2f} | {diff:.1e}")

    print()
    for name, *_ in pairs:
        worst = max(v for (n, _), v in overhead.items() if n == name)
        print(f"{name}: overhead ratio <= {worst:.2f} ({'meets' if worst <= 0.25 else 'misses'} the goal <= 0.25); "
              f"end-to-end ratio {e2e[name]:.2f} ({'meets' if e2e[name] <= 1 else 'misses'} the goal <= 1)")


if __name__ == '__main__':
    t0 = time.perf_counter()
    main()
    print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s")
