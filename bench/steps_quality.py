"""Steps against quality on the digits: classifier-FID and class accuracy of DDIM and DDPM, laid out as DDIM's Table 1.

One class-conditional model is trained once, here: the 'digits' `UNet` on the training split of the 8x8 digits, with
`diffnb.train.train` (AdamW, EMA, conditioning dropout 0.1) for about a minute on the CPU. Its EMA weights
then draw the same number of samples, an equal share of every class, from the same x_T with each sampler:
  - DDIM with eta = 0 at 10, 20, 50 and 100 steps;
  - DDPM (ancestral, beta_tilde variance, which is DDIM with eta = 1) at the same step counts and at all 1000 steps.
Every sampler uses 'trailing' spacing and clips x0_hat to [-1, 1] (the model's `x0_range`). If `diffnb.guidance`
provides `CFGDenoiser`, samples are drawn with classifier-free guidance at scale GUIDANCE; otherwise conditionally,
without guidance, and the output says so.

The samples are scored by `diffnb.metrics.score_samples` with the in-domain feature classifier
(`diffnb.metrics.feature_classifier`, trained once and cached): classifier-FID against the test split and the share of
samples the classifier assigns to the class they were asked for. FID is printed as a ratio to two real-vs-real floors,
both training images against the test split at the sample count: `score_samples`' floor, whose training subsets are
drawn at random, and a class-matched floor, whose subsets have the samples' class counts (an equal share per class, as
the test split has). The samples are class-balanced by construction, and random subsets are not: on the digits that
imbalance alone raises the floor by about half, so the class-matched floor is the fair one for these samples.

The CPU is a shared one: the times printed move with other people's load (printed too). One thread by default.

Run from the repository root:  python bench/steps_quality.py [--quick] [--threads 1] [--n 300]
"""
import argparse, importlib, inspect, os, sys, time, platform, pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clean checkout, no install needed

import torch
from diffnb.core import make_generator
from diffnb.data import load_digits_data
from diffnb.forward import NoiseSchedule
from diffnb.unet import UNet
from diffnb.train import train, TrainConfig
from diffnb.sampling import sample, DDPMSampler
from diffnb.ddim import DDIMSampler
from diffnb.metrics import feature_classifier, score_samples, fid

GUIDANCE = 1.5
STEPS = (10, 20, 50, 100, 1000)
SAMPLERS = {'DDIM (eta = 0)': lambda s: DDIMSampler(s, spacing='trailing'),
            'DDPM (eta = 1)': lambda s: DDPMSampler(s, spacing='trailing')}  # beta_tilde variance: DDIM's eta = 1
PLAN = [('DDIM (eta = 0)', k) for k in STEPS[:-1]] + [('DDPM (eta = 1)', k) for k in STEPS]


def guided(model, scale):
    "`diffnb.guidance.CFGDenoiser` around `model` at `scale`, or None (with the reason) if it is not there."
    try: CFGDenoiser = importlib.import_module('diffnb.guidance').CFGDenoiser
    except (ImportError, AttributeError) as e: return None, f"diffnb.guidance.CFGDenoiser is not available ({e})"
    params = inspect.signature(CFGDenoiser).parameters
    name = next((p for p in ('scale', 'guidance_scale', 'guidance', 'w') if p in params), None)
    try: return (CFGDenoiser(model, **{name: scale}) if name else CFGDenoiser(model, scale)), None
    except Exception as e: return None, f"CFGDenoiser(model, {scale}) failed: {type(e).__name__}: {e}"


def matched_floor(clf, x_train, y_train, x_test, labels, reps: int = 10) -> tuple[float, float]:
    "Mean and sd of the FID of training subsets with the class counts of `labels`, against the test split."
    f_train, f_test, g = clf.features(x_train), clf.features(x_test), make_generator(0)
    rows, counts = [(y_train == c).nonzero().flatten() for c in range(10)], torch.bincount(labels, minlength=10)
    fids = []
    for _ in range(reps):
        idx = torch.cat([r[torch.randperm(len(r), generator=g)[:k]] for r, k in zip(rows, counts.tolist())])
        fids.append(fid(f_train[idx], f_test))
    return torch.tensor(fids).mean().item(), torch.tensor(fids).std().item()


def train_model(x_train, y_train, schedule, steps):
    "The 'digits' UNet trained on the training split; returns the EMA model and a line about the run."
    config = TrainConfig(steps=steps, batch_size=128, lr=3e-3, warmup_steps=max(1, steps // 20), ema_decay=0.995,
                         p_uncond=0.1, mixed_precision='no', seed=0)
    torch.manual_seed(0)
    model = UNet.from_config_name('digits')
    t0 = time.perf_counter()
    result = train(model, (x_train, y_train), schedule, config, progress=False)
    secs, tail = time.perf_counter() - t0, result.losses[-max(1, steps // 10):]
    return result.ema_model, secs, (
        f"trained the 'digits' UNet ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters) on "
        f"{len(x_train)} digits: {steps} steps of batch {config.batch_size}, lr {config.lr}, in {secs:.0f} s "
        f"({steps * config.batch_size / secs:.0f} images/s); mean loss of the last 10% {sum(tail) / len(tail):.4f}")


def print_table(title, n, f):
    print(f"\n{title}, {n} samples; rows: sampler, columns: steps")
    print(f"{'sampler':16} | " + ' | '.join(f"{k:>14}" for k in STEPS)); print('-' * (19 + 17 * len(STEPS)))
    for name in SAMPLERS:
        print(f"{name:16} | " + ' | '.join(f"{f((name, k)) if (name, k) in dict.fromkeys(PLAN) else '-':>14}"
                                           for k in STEPS))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='a smoke run: a few training steps, few samples')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--n', type=int, default=None, help='samples per sampler (default 150; 40 with --quick)')
    ap.add_argument('--steps', type=int, default=None, help='training steps (default 400; 30 with --quick)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, train_steps = args.n or (40 if args.quick else 150), args.steps or (30 if args.quick else 400)
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"threads={torch.get_num_threads()}; a shared machine (other people's jobs running), load average "
          f"{os.getloadavg()[0]:.2f} at the start\n")

    (x_train, y_train), (x_test, _) = load_digits_data(8, 'train'), load_digits_data(8, 'test')
    t0 = time.perf_counter()
    clf = feature_classifier('digits')  # trained once, then read from the cache folder
    print(f"feature classifier: test accuracy {clf.test_accuracy:.1%} (ready in {time.perf_counter() - t0:.0f} s)")
    schedule = NoiseSchedule.from_name('cosine')
    ema, train_s, line = train_model(x_train, y_train, schedule, train_steps)
    print(line)
    denoiser, why = guided(ema, GUIDANCE)
    how = (f"classifier-free guidance at scale {GUIDANCE}" if denoiser is not None
           else f"conditional sampling WITHOUT guidance ({why})")
    denoiser = denoiser or ema
    print(f"sampling: {how}\n")

    labels = torch.arange(n) % 10  # an equal share of every class
    xT = torch.randn(n, 1, 8, 8, generator=make_generator(0))  # the same x_T for every sampler
    m_floor, m_sd = matched_floor(clf, x_train, y_train, x_test, labels)
    scores, secs = {}, {}
    for name, k in PLAN:
        t0 = time.perf_counter()
        x = sample(denoiser, SAMPLERS[name](schedule), xT.shape, k, cond=labels, xT=xT, generator=make_generator(1))
        secs[name, k] = time.perf_counter() - t0
        r = scores[name, k] = score_samples(x, labels, x_train, x_test, clf)
        print(f"  {name} {k:4} steps: FID {r['fid']:.3f} ({r['fid'] / m_floor:.2f}x the class-matched floor), "
              f"accuracy {r['accuracy']:.1%}, nn ratio {r['nn_ratio']:.2f}, {secs[name, k]:.1f} s")

    print_table("classifier-FID (its ratio to the class-matched floor)", n,
                lambda key: f"{scores[key]['fid']:.3f} ({scores[key]['fid'] / m_floor:.2f}x)")
    print_table("class accuracy of the samples", n, lambda key: f"{scores[key]['accuracy']:.1%}")
    print_table("sampling time, s", n, lambda key: f"{secs[key]:.1f}")
    r = scores[PLAN[0]]
    print(f"\nreal-vs-real floors at {n} images: class-matched {m_floor:.3f} (sd {m_sd:.3f} over 10 draws); "
          f"score_samples' random subsets {r['fid_floor']:.3f} (sd {r['fid_floor_sd']:.3f} over 5 draws)")
    print(f"the classifier's accuracy on real test digits: {r['accuracy_real']:.1%}")
    print(f"{how}; model trained in {train_s:.0f} s; load average {os.getloadavg()[0]:.2f} at the end, "
          f"on {os.cpu_count()} CPUs")


if __name__ == '__main__':
    t0 = time.perf_counter()
    main()
    print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s")
