#!/usr/bin/env bash
# Run the float comparisons (tests marked `numerics`) again on CPU kernels other than this
# machine's own. torch picks its kernels by ATEN_CPU_CAPABILITY (default < avx2 < avx512) and can
# only be told to use a lower one than the CPU has: a tolerance that holds only on the native
# kernels fails here, as it would on the next machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
native=$("$PYTHON" -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())")
case "$native" in
  avx512) others="avx2 default" ;;
  avx2) others="default" ;;
  *) echo "native CPU capability is '$native': no lower kernels to check against"; exit 0 ;;
esac
for capability in $others; do
  echo "== tests marked numerics under ATEN_CPU_CAPABILITY=$capability (native: $native)"
  ATEN_CPU_CAPABILITY=$capability "$PYTHON" -m pytest -q -m numerics -p no:cacheprovider
done
