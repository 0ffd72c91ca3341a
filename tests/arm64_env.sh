#!/bin/sh
# An arm64 Debian userland and a runtime-only virtualenv in it, run through qemu-user (no torch, no ARM machine).
#
#   sh tests/arm64_env.sh DIR WHEEL [EXTRAS]      e.g.  sh tests/arm64_env.sh .cache/arm64 dist/osnet_edge-0.1.0-py3-none-any.whl onnx,openvino
#   then: QEMU_CPU=cortex-a76 qemu-aarch64-static -L DIR/rootfs DIR/venv/bin/python ...
#
# DIR/rootfs: `mmdebstrap --variant=extract --architectures=arm64 bookworm` with this machine's Debian sources:
# python3.11 and its libraries (~30 .debs, ~15 MB; 84 MB unpacked). extract runs no maintainer script, so it needs
# no binfmt_misc (often unmounted in containers): every arm64 program is started as `qemu-aarch64-static -L rootfs
# PROGRAM` by hand. That has one consequence: an emulated program cannot exec another arm64 program, so the venv
# is made --without-pip and pip is run from Debian's pip wheel; nothing below spawns an arm64 subprocess.
# DIR/venv: the osnet-edge WHEEL with EXTRAS (default onnx,openvino) and the aarch64 wheels pip resolves for them.
#
# The emulated CPU is a Cortex-A76 (QEMU_CPU, the Raspberry Pi 5's core, ARMv8.2 like a Jetson Orin's A78AE),
# not QEMU's "max" CPU, whose SVE2/SME would send the libraries down code paths no Jetson or Pi has. qemu-user
# shows programs the host's x86 /proc/cpuinfo, which ONNX Runtime's CPU detection (pytorch/cpuinfo) cannot parse
# on arm64: its import segfaults. So DIR/rootfs/proc/cpuinfo (qemu -L reads the prefix first) is written from the
# emulated CPU's own AT_HWCAP, with the Cortex-A76's CPU part: what the kernel would print on that CPU.
set -eu
DIR=$1
WHEEL=$2
EXTRAS=${3:-onnx,openvino}
SUITE=${ARM64_SUITE:-bookworm}
SOURCES=${ARM64_SOURCES:-/etc/apt/sources.list.d/debian.sources}
export QEMU_CPU=${QEMU_CPU:-cortex-a76}
HOSTPY=${HOSTPY:-python3}

for TOOL in qemu-aarch64-static mmdebstrap; do
    command -v "$TOOL" >/dev/null || { echo "arm64_env.sh: needs $TOOL (apt-get install qemu-user-static mmdebstrap)" >&2; exit 1; }
done
[ -f "$SOURCES" ] || SOURCES=http://deb.debian.org/debian
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
R=$DIR/rootfs
Q="qemu-aarch64-static -L $R"

if [ ! -f "$R/.done" ]; then
    rm -rf "$R"
    echo "arm64_env.sh: arm64 $SUITE userland (python3.11) from $SOURCES -> $R"
    mmdebstrap --quiet --variant=extract --architectures=arm64 \
        --include=python3.11,python3.11-venv,libpython3.11-stdlib,python3-pip-whl,python3-setuptools-whl,libgomp1,libstdc++6,ca-certificates \
        "$SUITE" "$R" "$SOURCES"
    touch "$R/.done"
fi

mkdir -p "$R/proc"
HW=$($Q "$R/usr/bin/python3.11" -c 'import ctypes; g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong; g.argtypes = [ctypes.c_ulong]; print(g(16), g(26))')
NCPU=$(nproc)
# shellcheck disable=SC2086
"$HOSTPY" - "$R/proc/cpuinfo" "$NCPU" $HW <<'EOF'
import sys
sys.path.insert(0, "benchmarks")
from probe import hwcap_flags  # the one AT_HWCAP table, from the source tree

path, ncpu, hwcap, hwcap2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
core = ("BogoMIPS\t: 50.00\nFeatures\t: {}\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
        "CPU part\t: 0xd0b\nCPU revision\t: 1\n").format(" ".join(hwcap_flags(hwcap, hwcap2)))
open(path, "w").write("\n".join(f"processor\t: {i}\n{core}" for i in range(ncpu)))
EOF

if [ ! -x "$DIR/venv/bin/python" ] || [ ! -d "$DIR/venv/lib/python3.11/site-packages/pip" ]; then
    rm -rf "$DIR/venv"
    $Q "$R/usr/bin/python3.11" -m venv --without-pip "$DIR/venv"
    PIPWHL=$(ls "$R"/usr/share/python-wheels/pip-*.whl | head -n 1)
    $Q "$DIR/venv/bin/python" "$PIPWHL/pip" install -q --disable-pip-version-check --upgrade pip
fi
echo "arm64_env.sh: installing $(basename "$WHEEL")[$EXTRAS] (aarch64 wheels from the registry) into $DIR/venv"
$Q "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL[$EXTRAS]"
# what a fresh install resolves to (wheel files, versions), whatever this venv held before
$Q "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed \
    --report "$DIR/install-report.json" "$WHEEL[$EXTRAS]"
# the wheel's version does not change while its code does: put this build's files in place
$Q "$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$WHEEL"
$Q "$DIR/venv/bin/python" -c 'import platform, numpy, cv2, onnxruntime, openvino; print("arm64_env.sh:", platform.machine(), "python", platform.python_version(), "numpy", numpy.__version__, "opencv", cv2.__version__, "onnxruntime", onnxruntime.__version__, "openvino", openvino.__version__)'
