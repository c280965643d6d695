"""Regenerates docs/img/plots_example.png: the four per-layer figures of one MiniLM matrix, drawn
with the plot functions alone.  Run from the repository root: python docs/plots_example.py"""
import matplotlib.pyplot as plt, numpy as np, subprocess, sys
from safetensors.numpy import load_file
from tailscope.fit.detx import detx
from tailscope.plots import plot_esd, plot_esd_loglog, plot_ks_curve, plot_randomized_esd

minilm = subprocess.run([sys.executable, "tools/fetch_models.py", "--print", "minilm"], capture_output=True, text=True).stdout.strip()
W = load_file(f"{minilm}/model.safetensors")["encoder.layer.0.output.dense.weight"].T.astype(np.float64)  # N x M = 1536 x 384
evals = np.linalg.eigvalsh(W.T @ W)                                     # the ESD tailscope analyzes
S = np.random.default_rng(0).permutation(W.ravel()).reshape(W.shape)   # entries shuffled
fig, ax = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
plot_esd(evals, ax[0, 0], name="MiniLM encoder.layer.0.output.dense")
plot_esd_loglog(evals, ax=ax[0, 1], detx_value=detx(evals).value)
plot_ks_curve(evals, ax=ax[1, 0])
plot_randomized_esd(np.linalg.eigvalsh(S.T @ S), *W.shape, ax=ax[1, 1])
fig.savefig("docs/img/plots_example.png", dpi=72)
