#!/bin/sh
# `make check-arm64`: the runtime-only install on aarch64 (qemu-user, Cortex-A76) against x86-64, step by step.
#
#   sh tests/arm64_check.sh [DIR] [HOST_PYTHON] [OUT]     defaults: .cache/arm64 .venv/bin/python benchmarks/results/arm64
#
# 1. the osnet-edge wheel, built here;  2. the arm64 userland + runtime-only venv (tests/arm64_env.sh);
# 3. osnet_x0_25 exported on x86-64 as ONNX FP32, OpenVINO FP32 / FP16 IR, INT8 IR and INT8 Q/DQ ONNX (INT8
#    calibrated on the real crops' train split);  4. x86-64 reference embeddings of real crops (test split);
# 5. the same crops embedded on aarch64 (tests/arm64_check.py compare);  6. OpenVINO's throughput streams, which
#    hang under qemu-user 7.2, probed with a timeout;  7. osnet-bench on aarch64;  8. the [tensorrt] extra resolved
#    by aarch64 pip (dry run).
# Crops: ARM64_CROPS (default /work/data/vtest_crops, an osnet-crops folder of vtest.avi; make one with
# `osnet-crops /usr/share/doc/opencv-doc/examples/data/vtest.avi --out DIR`).
set -eu
DIR=${1:-.cache/arm64}
PY=${2:-.venv/bin/python}
OUT=${3:-benchmarks/results/arm64}
CROPS=${ARM64_CROPS:-/work/data/vtest_crops}
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
mkdir -p "$DIR" "$OUT"
[ -d "$CROPS/bounding_box_train" ] || { echo "arm64_check.sh: no crops in $CROPS (set ARM64_CROPS; see the header)" >&2; exit 1; }

echo "== 1. wheel"
rm -rf "$DIR/dist"
"$PY" -m build -q --no-isolation --outdir "$DIR/dist" . >/dev/null  # sdist, then the wheel from it: no build/ in the tree
WHEEL=$(ls "$DIR"/dist/osnet_edge-*.whl)
echo "$WHEEL"

echo "== 2. arm64 userland + runtime-only venv"
HOSTPY=$PY sh tests/arm64_env.sh "$DIR" "$WHEEL" onnx,openvino
ABS=$(cd "$DIR" && pwd)
APY="nice -n 5 qemu-aarch64-static -L $ABS/rootfs $ABS/venv/bin/python"
"$PY" - "$ABS/install-report.json" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
print("aarch64 wheels installed:", ", ".join(sorted(
    f"{i['metadata']['name']} {i['metadata']['version']} ({i['download_info']['url'].rsplit('/', 1)[-1].split('-')[-1]})"
    for i in items)))
EOF
du -sm "$ABS"/venv/lib/python3.11/site-packages/* | sort -rn | head -n 6 | sed 's|/.*/site-packages/| |; s|^|  MB |'

echo "== 3. artifacts exported on x86-64"
A=$DIR/artifacts
E="nice -n 5 $(dirname "$PY")/osnet-export --arch osnet_x0_25 -o $A/"
if [ ! -f "$A/.done" ]; then
    rm -rf "$A"
    $E --format onnx
    $E --format openvino
    $E --format openvino --half
    $E --format openvino --int8 --calib "$CROPS/bounding_box_train"
    $E --format onnx --int8 --calib "$CROPS/bounding_box_train"
    touch "$A/.done"
fi
ls "$A"

echo "== 4. x86-64 reference embeddings"
nice -n 5 "$PY" tests/arm64_check.py reference "$A" "$CROPS/bounding_box_test" "$DIR/ref.npz"

echo "== 5. the same crops on aarch64 (emulated)"
status=0
$APY -u tests/arm64_check.py compare "$A" "$DIR/ref.npz" "$OUT/emulated_run.json" --openvino-hint latency \
    --timeout 1800 || status=1

echo "== 6. OpenVINO throughput hint (two concurrent streams) on aarch64: 8 crops, 300 s at most"
if timeout 330 $APY -u -c "
import sys, numpy as np
sys.path.insert(0, 'tests')
from arm64_check import _crops
from osnet_edge import Embedder
crops = _crops(np.load('$DIR/ref.npz'))[:8]
with Embedder('$A/osnet_x0_25_256x128_fp32.xml', device='CPU', hint='throughput', timeout=300) as e:
    print('throughput streams:', e.streams, 'embedded', e.embed(crops).shape)
"; then echo "throughput hint: ran"; else echo "throughput hint: did not finish in 300 s: hangs under qemu-user"; fi

echo "== 7. osnet-bench on aarch64 (emulated: says nothing about speed)"
# the console script, not `-m` from the repository root, where the source tree's osnet_edge/ would shadow the wheel
$APY "$ABS/venv/bin/osnet-bench" "$A/osnet_x0_25_256x128_fp32.onnx" --batch 1 --iters 3 --warmup 1 --rounds 1 \
    --modes model --no-baseline --no-probe --json "$OUT/bench_emulated.json" || status=1

echo "== 8. pip install 'osnet-edge[tensorrt]' as aarch64 pip resolves it (dry run)"
$APY -m pip install -q --disable-pip-version-check --dry-run --ignore-installed --report "$DIR/tensorrt-report.json" \
    "$WHEEL[tensorrt]" || status=1
"$PY" - "$DIR/tensorrt-report.json" "$ABS/install-report.json" <<'EOF'
import json, sys
names = lambda p: {i["metadata"]["name"].lower() for i in json.load(open(p))["install"]}
trt, runtime = names(sys.argv[1]), names(sys.argv[2]) - {"onnxruntime", "openvino", "openvino-telemetry",
                                                          "flatbuffers", "protobuf", "packaging"}
extra = sorted(trt - runtime)
print("[tensorrt] adds on aarch64:", ", ".join(extra))
print("tensorrt wheels pulled:", [n for n in extra if n.startswith("tensorrt")] or "none")
EOF
exit $status
