"""Latent against pixel diffusion on the digits at 32x32: training cost, sampling time, memory, quality, inversion.

Both models are class-conditional `UNet`s of the same base width, trained by the same `diffnb.train.train` call:
  - pixel: 1 x 32 x 32 images, three levels (32, 16, 8);
  - latent: the 4 x 8 x 8 latents of a `diffnb.vae.VAE` (f = 4) trained first on the training digits, two levels
    (8, 4); the trainer encodes every batch through the VAE (posterior mean, no gradients), and samples are decoded.
The VAE is trained once and its time is reported, not charged to the latent model (as in latent diffusion, where one
autoencoder serves many diffusion models).

Measured, in float32 on the CPU:
  - training cost: seconds per optimizer step (and per image) of `Trainer.train_step`, after a warm-up step; for the
    latent model also with the latents encoded in advance, which shows what encoding every batch costs;
  - memory: MB of tensors autograd saves for backward in one step (each storage once), the activation memory of a step;
  - sampling time: one `generate` call, 100 samples with 50 DDIM steps, decoding included;
  - quality at equal wall-clock training time: each model trains for budget / (its step time) steps; classifier-FID
    (`diffnb.metrics.score_samples`) of class-balanced samples (50 DDIM steps) against the held-out digits, with the
    real-vs-real floor; samples and real digits are reduced to the classifier's native 8 x 8 by averaging 4 x 4 blocks;
  - DDIM inversion: held-out digits encoded, inverted to z_T with `diffnb.ddim.ddim_invert` and sampled back with the
    same number of DDIM steps; PSNR against the originals at 10, 50 and 200 steps, and the VAE's own round trip.

Goals (issue): a latent training step at least 4x cheaper than a pixel step; FID of the latent model within 1.5x of the
pixel model's at equal training time.

Run from the repository root:  python bench/latent_vs_pixel.py [--threads 1] [--budget 90] [--quick] [--vae FOLDER]
"""
import argparse, os, sys, time, platform, pathlib, warnings
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a clean checkout, no install needed

import torch
from diffnb.core import make_generator
from diffnb.data import load_digits_data
from diffnb.forward import NoiseSchedule
from diffnb.unet import UNet
from diffnb.train import TrainConfig, train
from diffnb.vae import VAE, PixelCodec, train_vae, measure_scale, set_scaling_factor, psnr
from diffnb.latent import step_cost, sampling_seconds, generate, to_native, invert_images
from diffnb.metrics import feature_classifier, score_samples

warnings.filterwarnings('ignore', category=FutureWarning)


def get_vae(x_train, folder, steps):
    "The digits VAE: loaded from `folder` if given, else trained here (seconds, or None if loaded)."
    if folder:
        vae = VAE.from_pretrained(folder).eval().requires_grad_(False)
        return set_scaling_factor(vae, measure_scale(vae, x_train)), None  # measured here, whatever was saved
    cfg = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup_steps=min(50, steps // 5), grad_clip=None,
                      ema_decay=0.99, mixed_precision='no')
    torch.manual_seed(0); t0 = time.perf_counter()
    vae = train_vae(VAE(in_channels=1), x_train, cfg, progress=False).ema_model.requires_grad_(False)
    secs = time.perf_counter() - t0
    return set_scaling_factor(vae, measure_scale(vae, x_train)), secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')
    ap.add_argument('--budget', type=float, default=None, help='training seconds per model (default 90; 5 quick)')
    ap.add_argument('--quick', action='store_true', help='a smoke run: tiny budget, few samples')
    ap.add_argument('--vae', default=None, help='a folder with a saved digits VAE (save_pretrained) to skip training')
    ap.add_argument('--vae-steps', type=int, default=None, help='VAE training steps (default 600; 20 quick)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    budget = args.budget or (5.0 if args.quick else 90.0)
    n_q, n_inv, n_s = (20, 4, 10) if args.quick else (150, 64, 100)
    width, batch = 32, 64
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"threads={torch.get_num_threads()}; float32 on the CPU of a shared machine, load average {load0[0]:.2f}\n")

    (x_train, y_train), (x_test, y_test) = load_digits_data(32, 'train'), load_digits_data(32, 'test')
    vae, vae_s = get_vae(x_train, args.vae, args.vae_steps or (20 if args.quick else 600))
    with torch.no_grad(): vae_psnr = psnr(vae.decode(vae.encode(x_test)).clamp(-1, 1), x_test).mean().item()
    print(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e3:.0f}k parameters, "
          f"{'loaded' if vae_s is None else f'trained in {vae_s:.0f} s'}, scaling factor {vae.scaling_factor:.3f}, "
          f"held-out PSNR {vae_psnr:.2f} dB; 1x32x32 -> 4x8x8 latents\n")

    schedule = NoiseSchedule.from_name('cosine')
    def pixel_unet():
        torch.manual_seed(0)
        return UNet(in_channels=1, image_size=32, channels=width, channel_mults=(1, 2, 2), n_classes=10)
    def latent_unet():
        torch.manual_seed(0)
        return UNet(in_channels=4, image_size=8, channels=width, channel_mults=(1, 2), n_classes=10, x0_range=None)
    sides = {'pixel': (pixel_unet, PixelCodec(1)), 'latent': (latent_unet, vae)}
    n_params = {k: sum(p.numel() for p in make().parameters()) for k, (make, _) in sides.items()}

    data = (x_train, y_train)
    cost_cfg = TrainConfig(steps=100, batch_size=batch, mixed_precision='no')
    n_timed = 2 if args.quick else 8
    cost = {k: step_cost(make(), data, schedule, cost_cfg, codec, n_timed) for k, (make, codec) in sides.items()}
    with torch.no_grad(): z_train = torch.cat([vae.encode(x_train[i:i + 256]) for i in range(0, len(x_train), 256)])
    pre = step_cost(latent_unet(), (z_train, y_train), schedule, cost_cfg, PixelCodec(4), n_timed)

    print(f"Training cost, batch {batch} (mean of {n_timed} steps after a warm-up)")
    head = f"{'model':28} | {'params':>7} | {'ms / step':>9} | {'ms / image':>10} | {'MB saved for backward':>21}"
    print(head); print('-' * len(head))
    rows = [('pixel', cost['pixel'], n_params['pixel']), ('latent (encoding each batch)', cost['latent'],
            n_params['latent']), ('latent (latents pre-encoded)', pre, n_params['latent'])]
    for name, c, p in rows:
        print(f"{name:28} | {p / 1e6:6.2f}M | {c['s_per_step'] * 1e3:9.1f} | {c['s_per_image'] * 1e3:10.2f} | "
              f"{c['saved_mb']:21.1f}")
    step_ratio = cost['pixel']['s_per_step'] / cost['latent']['s_per_step']
    mem_ratio = cost['pixel']['saved_mb'] / cost['latent']['saved_mb']
    print(f"pixel / latent: step time {step_ratio:.2f}x (pre-encoded: "
          f"{cost['pixel']['s_per_step'] / pre['s_per_step']:.2f}x), memory saved for backward {mem_ratio:.2f}x\n")

    clf = feature_classifier('digits')
    labels = torch.arange(n_q) % 10
    runs, quality = {}, {}
    print(f"Equal training time: {budget:.0f} s each (steps = budget / measured step time), batch {batch}")
    for k, (make, codec) in sides.items():
        steps = max(1, round(budget / cost[k]['s_per_step']))
        cfg = TrainConfig(steps=steps, batch_size=batch, lr=2e-3, warmup_steps=max(1, steps // 10), ema_decay=0.995,
                          mixed_precision='no')
        t0 = time.perf_counter()
        runs[k] = train(make(), data, schedule, cfg, codec=codec, progress=False)
        secs = time.perf_counter() - t0
        x = generate(runs[k].ema_model, schedule, codec, (n_q, 1, 32, 32), 50, cond=labels,
                     generator=make_generator(1))
        quality[k] = score_samples(to_native(x.clamp(-1, 1)), labels, to_native(x_train), to_native(x_test), clf)
        quality[k].update(steps=steps, secs=secs)
    head = (f"{'model':6} | {'steps':>5} | {'train s':>7} | {'FID':>7} | {'floor':>7} | {'FID / floor':>11} | "
            f"{'accuracy':>8}")
    print(head); print('-' * len(head))
    for k, q in quality.items():
        print(f"{k:6} | {q['steps']:5} | {q['secs']:7.0f} | {q['fid']:7.3f} | {q['fid_floor']:7.3f} | "
              f"{q['fid'] / q['fid_floor']:11.2f} | {q['accuracy']:8.1%}")
    fid_ratio = quality['latent']['fid'] / quality['pixel']['fid']
    print(f"latent / pixel FID: {fid_ratio:.2f} ({n_q} samples, 50 DDIM steps)\n")

    samp = {k: sampling_seconds(runs[k].ema_model, schedule, codec, (n_s, 1, 32, 32), 50, torch.arange(n_s) % 10)
            for k, (_, codec) in sides.items()}
    print(f"Sampling {n_s} images with 50 DDIM steps (decoding included): pixel {samp['pixel']:.2f} s, latent "
          f"{samp['latent']:.2f} s, pixel / latent {samp['pixel'] / samp['latent']:.2f}x\n")

    x_inv, y_inv = x_test[:n_inv], y_test[:n_inv]
    with torch.no_grad(): ceiling = psnr(vae.decode(vae.encode(x_inv)).clamp(-1, 1), x_inv).mean().item()
    inv = {}
    for k in (10, 50, 200):
        _, rec = invert_images(runs['latent'].ema_model, schedule, vae, x_inv, k, cond=y_inv)
        inv[k] = psnr(rec.clamp(-1, 1), x_inv).mean().item()
    print(f"DDIM inversion of {n_inv} held-out digits through the latent model, PSNR: " +
          ', '.join(f"{k} steps {v:.2f} dB" for k, v in inv.items()) + f"; the VAE's own round trip {ceiling:.2f} dB\n")

    print(f"latent step {step_ratio:.2f}x cheaper than pixel: {'meets' if step_ratio >= 4 else 'misses'} the goal >= 4")
    print(f"latent FID {fid_ratio:.2f}x pixel's at equal training time: "
          f"{'meets' if fid_ratio <= 1.5 else 'misses'} the goal <= 1.5")
    print(f"load average {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, on {os.cpu_count()} CPUs")


if __name__ == '__main__':
    t0 = time.perf_counter()
    main()
    print(f"\nbenchmark took {time.perf_counter() - t0:.0f} s")
