"""Packaging promises: the runtime install pulls no torch; missing extras give one line."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked for this test')
sys.meta_path.insert(0, _Block())
"""


def _setup_call():
    tree = ast.parse((ROOT / "setup.py").read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")


def test_runtime_requirements_have_no_torch():
    call = _setup_call()
    reqs = next(k.value for k in call.keywords if k.arg == "install_requires")
    names = [ast.literal_eval(e) for e in reqs.elts]
    assert names and not any(n.lower().startswith("torch") for n in names)


def test_design_folders_map_into_namespace():
    call = _setup_call()
    mapping = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_dir"))
    assert mapping["osnet_edge.export"] == "export"
    assert mapping["osnet_edge.calibration"] == "calibration"
    assert mapping["osnet_edge.benchmarks"] == "benchmarks"


def test_import_without_torch_and_one_line_for_torch_features():
    code = BLOCK_TORCH + """
import osnet_edge
from osnet_edge.preprocess import to_batch
try:
    osnet_edge.build_model('osnet_x0_25')
except osnet_edge.MissingDependencyError as e:
    print('ERR', e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    line = [l for l in out.stdout.splitlines() if l.startswith("ERR")]
    assert line and "osnet-edge[train]" in line[0] and "torch" in line[0]
