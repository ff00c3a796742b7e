#!/usr/bin/env bash
# Creates (if missing) the Python venv of the model trainer and installs the pinned
# requirements into it. Never deletes an existing venv: it only adds to it.
#
#   scripts/model/setup-venv.sh            # venv at /var/cache/interference-model/venv
#   VENV=/some/dir scripts/model/setup-venv.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${VENV:-/var/cache/interference-model/venv}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating venv $venv with $("$python" --version 2>&1)"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import jax, jaxlib, optax, numpy, onnx, onnxruntime, lightgbm, pytest, sys
print("venv ready: python %s, jax %s, jaxlib %s, optax %s, numpy %s, onnx %s, onnxruntime %s, "
      "lightgbm %s, pytest %s"
      % (sys.version.split()[0], jax.__version__, jaxlib.__version__, optax.__version__,
         numpy.__version__, onnx.__version__, onnxruntime.__version__, lightgbm.__version__,
         pytest.__version__))
PY
