#!/usr/bin/env bash
# Packaging check run by .ci/run: `python -m build` makes the sdist, the wheel is built from
# that sdist (so the sdist is proven complete), then installed into a fresh virtual
# environment with --only-binary :all: (pip may not build anything there: no compiler is
# needed on the target machine) and `tfcore check` runs from outside the checkout.
# Dependencies come from the CI venv's pip cache / the configured index. One compile.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/wheel-check
rm -rf "$out" && mkdir -p "$out"
.venv/bin/pip install -q build
.venv/bin/python -m build --sdist --outdir "$out/dist" .
sdist=$(ls "$out"/dist/tfcore-*.tar.gz)
.venv/bin/pip wheel -q --no-deps -w "$out/dist" "$sdist"
wheel=$(ls "$out"/dist/tfcore-*.whl)
echo "check_wheel: built $sdist and $wheel"
python3 -m venv "$out/venv"
"$out/venv/bin/pip" install -q --only-binary :all: "$wheel"
if ! python3 -c "import sys, zipfile; sys.exit(any('libdnnl' in n for n in zipfile.ZipFile(sys.argv[1]).namelist()))" "$wheel"; then
    echo "check_wheel: the wheel bundles libdnnl; it should depend on onednn-cpu-gomp instead" >&2
    exit 1
fi
(cd "$out" && venv/bin/tfcore check && venv/bin/python -c "import tfcore; tfcore.show_config()")
echo "check_wheel: the wheel installs without building and passes tfcore check"
