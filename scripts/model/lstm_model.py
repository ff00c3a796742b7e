"""The LSTM scorer's network (the legacy alternative to the nowcast): parameters,
the forward pass in JAX and in NumPy, batched prediction. Shared by the trainer
(train_lstm.py) and the exporter (export_onnx.py), so neither imports the other's
command."""
from __future__ import annotations

import numpy as np

# Where the trainer keeps weights between training and export.
DEFAULT_WORK = "/var/cache/interference-model/work"
# Workload classes never trained on: the held-out check of generalisation.
HELD_OUT_CLASSES = ["cache", "ctxsw"]


def normalisation(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every model tick of the training windows, as
    float32 (the sidecar's values, used as they are for training too). A constant
    feature's std is 1; one-hot and time features have mean 0 and std 1."""
    flat = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    mean[fx.UNSCALED_IDX] = 0.0
    std[fx.UNSCALED_IDX] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)


def init_params(key, f: int, h: int, mean_label: float):
    import jax
    import jax.numpy as jnp

    k1, k2, k3 = jax.random.split(key, 3)
    s = 1.0 / np.sqrt(h)
    wb = jnp.zeros(4 * h).at[2 * h : 3 * h].set(1.0)  # forget-gate bias 1 (order i, o, f, c)
    p = np.clip(mean_label / 100.0, 0.02, 0.98)
    return {
        "W": jax.random.uniform(k1, (4 * h, f), minval=-s, maxval=s),
        "R": jax.random.uniform(k2, (4 * h, h), minval=-s, maxval=s),
        "Wb": wb,
        "Rb": jnp.zeros(4 * h),
        "head_w": jax.random.uniform(k3, (h,), minval=-s, maxval=s),
        "head_b": jnp.array(float(np.log(p / (1 - p)))),
    }


def forward(params, x):
    """x [N, T, F] (normalised) -> slowdown [N], 0-100. JAX."""
    import jax
    import jax.numpy as jnp

    h_size = params["R"].shape[1]
    n = x.shape[0]
    xs = jnp.transpose(x, (1, 0, 2))
    b = params["Wb"] + params["Rb"]

    def step(carry, xt):
        h, c = carry
        z = xt @ params["W"].T + h @ params["R"].T + b
        i = jax.nn.sigmoid(z[:, 0:h_size])
        o = jax.nn.sigmoid(z[:, h_size : 2 * h_size])
        f = jax.nn.sigmoid(z[:, 2 * h_size : 3 * h_size])
        g = jnp.tanh(z[:, 3 * h_size :])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), None

    zeros = jnp.zeros((n, h_size), dtype=x.dtype)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), xs)
    return 100.0 * jax.nn.sigmoid(h @ params["head_w"] + params["head_b"])


def forward_numpy(params: dict, x: np.ndarray) -> np.ndarray:
    """The same model in float64 numpy (a reference for the export check)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    hs = p["R"].shape[1]
    n = x.shape[0]
    h = np.zeros((n, hs))
    c = np.zeros((n, hs))
    sig = lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))  # noqa: E731  (no overflow)
    for t in range(x.shape[1]):
        z = x[:, t, :].astype(np.float64) @ p["W"].T + h @ p["R"].T + p["Wb"] + p["Rb"]
        i, o, f, g = sig(z[:, :hs]), sig(z[:, hs : 2 * hs]), sig(z[:, 2 * hs : 3 * hs]), np.tanh(z[:, 3 * hs :])
        c = f * c + i * g
        h = o * np.tanh(c)
    return 100.0 * sig(h @ p["head_w"] + p["head_b"])


def predict(params, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    import jax

    f = jax.jit(forward)
    out = [np.asarray(f(params, x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


# --------------------------------------------------------------------------------------
# Training
