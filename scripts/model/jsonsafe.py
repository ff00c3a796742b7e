"""Numbers written to JSON the way the Rust side reads them back (serde_json)."""
from __future__ import annotations

import numpy as np


def f32_list(a) -> list[float]:
    """Shortest decimal strings that read back as the same float32."""
    return [float(str(np.float32(x))) for x in np.asarray(a, dtype=np.float32).ravel()]


def finite(o):
    """JSON-safe copy: NaN and infinities (e.g. the Spearman of a constant score) become
    null, since strict JSON readers (serde_json) refuse them."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if isinstance(o, np.generic):
        return finite(o.item())
    return o
