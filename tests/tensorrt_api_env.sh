#!/bin/sh
# A throw-away virtualenv holding the REAL TensorRT and cuda-python Python modules, for the API check
# (tests/tensorrt_api_snapshot.py). No torch, no osnet_edge: tensorrt + cuda-python + numpy + pytest.
#
#   sh tests/tensorrt_api_env.sh DIR TENSORRT_VERSION CUDA_SPEC
#   sh tests/tensorrt_api_env.sh .cache/tensorrt-api/11.4.0.106 11.4.0.106 cuda-bindings==13.5.0
#
# What is real and what is not: `tensorrt_bindings` (tensorrt-cu12-bindings, ~1.1-1.3 MB: the pybind11 module
# with every class, enum, method and docstring) is NVIDIA's own wheel; `tensorrt` is the 2-line re-export
# that the tensorrt-cu12 sdist holds. tensorrt-cu12-libs (libnvinfer & co., ~2-3 GB) is a wheel_stub on
# PyPI that fetches from pypi.nvidia.com at install time; instead its three sonames are built here as stubs
# exporting the 10 C entry points the bindings import (createInferBuilder_INTERNAL, ...), each returning NULL.
# That is enough to import the module and read its API; creating a Builder or Runtime fails cleanly
# ("factory function returned nullptr"). With TRT_REAL_LIBS=1 the real -libs wheel is installed instead.
set -eu
DIR=$1
TRT=$2
CUDA=$3
PYTHON=${PYTHON:-python3}
CU=${TRT_CUDA:-cu12}
PIPQ="-q --disable-pip-version-check"

for TOOL in cc nm readelf; do  # the stub libraries are built here (binutils + a C compiler)
    command -v "$TOOL" >/dev/null || { echo "tensorrt_api_env.sh: needs $TOOL (apt-get install gcc binutils)" >&2; exit 1; }
done
if [ -f "$DIR/.installed-$TRT-$CUDA" ]; then
    echo "$DIR: tensorrt $TRT + $CUDA already installed"
    exit 0
fi
rm -rf "$DIR"
$PYTHON -m venv "$DIR"
"$DIR/bin/python" -m pip install $PIPQ numpy pytest
"$DIR/bin/python" -m pip install $PIPQ --no-deps "tensorrt-$CU-bindings==$TRT"
"$DIR/bin/python" -m pip install $PIPQ "$CUDA"
SO=$("$DIR/bin/python" -c 'import importlib.util as u, os; s = u.find_spec("tensorrt_bindings"); print(os.path.join(os.path.dirname(s.origin), "tensorrt.so"))')
# The top-level `tensorrt` package is the tensorrt-cu12 sdist, whose whole content (11.4) is these two lines;
# up to ~10.12 that sdist is a wheel_stub that downloads from pypi.nvidia.com, so the two lines are written here.
SITE=$(dirname "$(dirname "$SO")")
mkdir -p "$SITE/tensorrt"
printf 'from tensorrt_bindings import *\nfrom tensorrt_bindings import __version__\n' > "$SITE/tensorrt/__init__.py"
if [ "${TRT_REAL_LIBS:-0}" = 1 ]; then
    "$DIR/bin/python" -m pip install $PIPQ --no-deps "tensorrt-$CU-libs==$TRT"
else
    BIND=$(dirname "$SO")
    SYMS=$(nm -D --undefined-only "$SO" | awk '$1 == "U" {print $2}' | grep -E '_INTERNAL$|Registry$|Version$|^initLibNvInferPlugins$')
    printf '%s\n' $SYMS | awk '{print "void *" $1 "(void) { return 0; }"}' > "$DIR/nvinfer_stub.c"
    # the bindings' RPATH is $ORIGIN: the stubs go beside tensorrt.so
    for LIB in $(readelf -d "$SO" | sed -n 's/.*Shared library: \[\(libnv[^]]*\)\].*/\1/p'); do
        cc -shared -fPIC -o "$BIND/$LIB" -Wl,-soname,"$LIB" "$DIR/nvinfer_stub.c"
    done
fi
"$DIR/bin/python" -c 'import tensorrt; print("tensorrt", tensorrt.__version__, "imports")'
touch "$DIR/.installed-$TRT-$CUDA"
