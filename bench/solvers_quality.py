"Steps against quality in model calls (NFE): DDIM, Euler ancestral, Heun and DPM-Solver++(2M) on the exact mixture oracle and on the digits model of `diffnb demo`."
import argparse, json, subprocess, sys, time
import torch
from diffnb.core import make_generator, cache_dir
from diffnb.forward import NoiseSchedule
from diffnb.sampling import sample
from diffnb.solvers import make_sampler
from diffnb.data import default_mixture
from diffnb.toy import MixtureOracle, sliced_wasserstein

ROWS = ('ddim', 'euler_a', 'heun', 'dpm++2m')
NFES = (5, 10, 20, 50)

def steps_for(name, nfe):
    "The most steps whose model calls fit in `nfe` (Heun: 2n - 1 calls for n steps)."
    return (nfe + 1) // 2 if name == 'heun' else nfe

def oracle_table(n_points=5000, spacing='trailing'):
    "Sliced Wasserstein to fresh data, per sampler and NFE, with the data floor."
    s, mix = NoiseSchedule.from_name('cosine'), default_mixture()
    oracle, refs = MixtureOracle(mix, s), [mix.sample(n_points, generator=make_generator(500 + k)) for k in range(4)]
    sw = lambda x: sum(sliced_wasserstein(x, r, generator=make_generator(0)).item() for r in refs) / len(refs)
    floor = sum(sw(mix.sample(n_points, generator=make_generator(100 + k))) for k in range(3)) / 3
    table = {}
    for name in ROWS:
        smp = make_sampler(name, s, spacing=spacing)
        for nfe in NFES:
            n = steps_for(name, nfe)
            x = sample(oracle, smp, (n_points, 2), n, generator=make_generator(0), device='cpu')
            table[name, nfe] = (smp.nfe(n) if hasattr(smp, 'nfe') else n, sw(x))
    return floor, table

def demo_model():
    "The digits model of `diffnb demo`, trained once and cached."
    from diffnb.cli import load_model
    out = cache_dir('solvers', 'demo')
    if not (out / 'model' / 'config.json').is_file():
        subprocess.run([sys.executable, '-m', 'diffnb.cli', 'demo', '--out', str(out), '--quiet'], check=True)
    return load_model(out)

def digits_table(guidance=1.6, n=500, seed=0, spacing='trailing'):
    "Classifier-FID (and its floor) and accuracy per sampler and NFE, for the demo's class-conditional U-Net."
    from diffnb.cli import evaluate
    from diffnb.guidance import CFGDenoiser
    model, info = demo_model()
    s = NoiseSchedule.from_name(info.get('schedule', 'cosine'))
    labels = torch.arange(10).repeat_interleave(n // 10)
    den, table = CFGDenoiser(model, guidance), {}
    for name in ROWS:
        smp = make_sampler(name, s, spacing=spacing)
        for nfe in NFES:
            k = steps_for(name, nfe)
            x = sample(den, smp, (n, 1, 8, 8), k, cond=labels, generator=make_generator(seed)).clamp(-1, 1)
            m = evaluate(x, labels, 'digits', seed=seed)
            table[name, nfe] = (smp.nfe(k) if hasattr(smp, 'nfe') else k, m['fid'], m['fid_floor'], m['accuracy'])
    return table

def show(table, cols):
    print('| sampler | ' + ' | '.join(f'{c} NFE' for c in NFES) + ' |')
    print('|---|' + '---|' * len(NFES))
    for name in ROWS: print(f'| {name} | ' + ' | '.join(cols(table[name, c]) for c in NFES) + ' |')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--what', default='both', choices=('oracle', 'digits', 'both'))
    p.add_argument('--spacing', default='trailing')
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.what in ('oracle', 'both'):
        t0 = time.time(); floor, tab = oracle_table(spacing=a.spacing)
        print(f'oracle, data floor {floor:.4f} ({time.time() - t0:.0f} s)')
        show(tab, lambda v: f'{v[1]:.4f} ({v[0]})')
    if a.what in ('digits', 'both'):
        t0 = time.time(); tab = digits_table(spacing=a.spacing)
        print(f'digits ({time.time() - t0:.0f} s); FID floor {next(iter(tab.values()))[2]:.3f}')
        show(tab, lambda v: f'FID {v[1]:.3f}, acc {v[3]:.3f} ({v[0]})')
