"""The demand forecaster's networks, on inputs [N, T, F] (T = E + K positions: E known
steps, then the K steps to forecast; docs/forecast.md), output [N, K] (one scaled
forecast per horizon).

The shipped one (`--arch mlp`, train.py's default): the inputs flattened row-major,
two ReLU layers of `hidden` units, a linear head:
  out = relu(relu(x w0 + b0) w1 + b1) head_w + head_b.

The alternative (`--arch lstm`): one forward LSTM over the T positions, and one linear
head shared by the last K positions, each with its own bias. Written in ONNX's terms so that the export is a
copy: gates in the order i, o, f, c; W [4H, F], R [4H, H], Wb and Rb [4H]; h_0 = c_0 = 0;
  i, o, f = sigmoid(x W_{i,o,f}^T + h R_{i,o,f}^T + Wb + Rb), g = tanh(... c ...),
  c' = f c + i g, h' = o tanh(c');
  out[:, k] = h_{E+k} . head_w + head_b[k],  k = 0..K-1   ([N, K]).
"""

from __future__ import annotations

import numpy as np


def init_params(key, f: int, h: int, k: int):
    import jax
    import jax.numpy as jnp

    k1, k2, k3 = jax.random.split(key, 3)
    s = 1.0 / np.sqrt(h)
    wb = jnp.zeros(4 * h).at[2 * h : 3 * h].set(1.0)  # forget-gate bias 1 (order i, o, f, c)
    return {
        "W": jax.random.uniform(k1, (4 * h, f), minval=-s, maxval=s),
        "R": jax.random.uniform(k2, (4 * h, h), minval=-s, maxval=s),
        "Wb": wb,
        "Rb": jnp.zeros(4 * h),
        "head_w": jax.random.uniform(k3, (h,), minval=-s, maxval=s) * 0.1,
        "head_b": jnp.zeros(k),
    }


def forward(params, x):
    """x [N, T, F] (normalised) -> [N, K]. JAX."""
    import jax
    import jax.numpy as jnp

    hs = params["R"].shape[1]
    k = params["head_b"].shape[0]
    n = x.shape[0]
    xs = jnp.transpose(x, (1, 0, 2))
    b = params["Wb"] + params["Rb"]
    xw = jnp.einsum("tnf,gf->tng", xs, params["W"]) + b

    def step(carry, xt):
        h, c = carry
        z = xt + h @ params["R"].T
        i = jax.nn.sigmoid(z[:, 0:hs])
        o = jax.nn.sigmoid(z[:, hs : 2 * hs])
        f = jax.nn.sigmoid(z[:, 2 * hs : 3 * hs])
        g = jnp.tanh(z[:, 3 * hs :])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((n, hs), dtype=x.dtype)
    _, ys = jax.lax.scan(step, (zeros, zeros), xw)  # [T, N, H]
    return (ys[-k:] @ params["head_w"]).T + params["head_b"]


def forward_numpy(params: dict, x: np.ndarray) -> np.ndarray:
    """The same model in float64 numpy (the export check's reference)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    hs = p["R"].shape[1]
    k = p["head_b"].shape[0]
    n, t = x.shape[0], x.shape[1]
    h = np.zeros((n, hs))
    c = np.zeros((n, hs))
    sig = lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))  # noqa: E731  (no overflow)
    out = np.zeros((n, k))
    for j in range(t):
        z = x[:, j, :].astype(np.float64) @ p["W"].T + h @ p["R"].T + p["Wb"] + p["Rb"]
        i, o, f, g = sig(z[:, :hs]), sig(z[:, hs : 2 * hs]), sig(z[:, 2 * hs : 3 * hs]), np.tanh(z[:, 3 * hs :])
        c = f * c + i * g
        h = o * np.tanh(c)
        if j >= t - k:
            out[:, j - (t - k)] = h @ p["head_w"] + p["head_b"][j - (t - k)]
    return out


def init_mlp(key, t: int, f: int, h: int, k: int, layers: int = 2):
    import jax

    keys = jax.random.split(key, layers + 1)
    p = {}
    d = t * f
    for i in range(layers):
        p[f"w{i}"] = jax.random.normal(keys[i], (d, h)) * np.sqrt(2.0 / d)
        p[f"b{i}"] = np.zeros(h, dtype=np.float32)
        d = h
    p["head_w"] = jax.random.normal(keys[-1], (d, k)) * 0.01
    p["head_b"] = np.zeros(k, dtype=np.float32)
    return p


def forward_mlp(params, x):
    import jax

    z = x.reshape(x.shape[0], -1)
    i = 0
    while f"w{i}" in params:
        z = jax.nn.relu(z @ params[f"w{i}"] + params[f"b{i}"])
        i += 1
    return z @ params["head_w"] + params["head_b"]


def forward_mlp_numpy(params: dict, x: np.ndarray) -> np.ndarray:
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    z = x.reshape(x.shape[0], -1).astype(np.float64)
    i = 0
    while f"w{i}" in p:
        z = np.maximum(0.0, z @ p[f"w{i}"] + p[f"b{i}"])
        i += 1
    return z @ p["head_w"] + p["head_b"]


def members(params: dict) -> list[dict]:
    """An ensemble's members (keys "m<i>.<name>"), or [params] for a single model."""
    if not any(k.startswith("m0.") for k in params):
        return [params]
    out = []
    while any(k.startswith(f"m{len(out)}.") for k in params):
        pre = f"m{len(out)}."
        out.append({k[len(pre):]: v for k, v in params.items() if k.startswith(pre)})
    return out


def ensemble(models: list[dict]) -> dict:
    """One params dict holding several members (their outputs are averaged)."""
    if len(models) == 1:
        return models[0]
    return {f"m{i}.{k}": v for i, m in enumerate(models) for k, v in m.items()}


def reference(params: dict, x: np.ndarray) -> np.ndarray:
    """float64 numpy forward of either architecture (the mean of an ensemble's members)."""
    outs = [forward_mlp_numpy(p, x) if "w0" in p else forward_numpy(p, x) for p in members(params)]
    return np.mean(outs, axis=0)


_JIT = {}


def predict(params, x: np.ndarray, batch: int = 16384) -> np.ndarray:
    ms = members(params)
    if len(ms) > 1:
        return np.mean([predict(p, x, batch) for p in ms], axis=0, dtype=np.float32)
    import jax

    f = _JIT.setdefault("mlp", jax.jit(forward_mlp)) if "w0" in params else _JIT.setdefault("fwd", jax.jit(forward))
    out = [np.asarray(f(params, x[i : i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, params["head_b"].shape[0]), dtype=np.float32)
