"""Every tensorrt / cuda-python call the project makes, collected from its source with `ast`, and checked
against an API snapshot (tests/tensorrt_api_snapshot.py) of the real modules: the name exists, with a
signature that accepts the call (positional count, keyword names), and cuda-python's calls return the
(err, value...) tuple that osnet_edge.runtime.tensorrt_common.cuda_call unpacks.

New calls are covered without editing this file, as long as they go through the project's usual names:
the module is `trt` (tensorrt) or `cudart` (cuda-python's runtime); objects are typed by where they come from
(`builder = trt.Builder(...)`, `network = builder.create_network(...)` -> the snapshot's return type), and a
function parameter takes the type its name has in PARAMETER_TYPES. A call under a version guard (`hasattr(...)`,
`strongly_typed_only(trt)` / `strong`) need exist in one supported version only, as must everything in a
function called only from under such guards.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "data" / "tensorrt_api"
SOURCES = ("osnet_edge", "export", "calibration", "benchmarks")
TRT_MODULE_NAMES = {"trt", "tensorrt"}
CUDA_MODULE_NAMES = {"cudart"}
# a function parameter (never assigned in the function) typed by its name
PARAMETER_TYPES = {"network": "INetworkDefinition", "builder": "Builder", "config": "IBuilderConfig",
                   "parser": "OnnxParser", "err": "ParserError", "logger": "Logger"}
GUARD_NAMES = {"hasattr", "strongly_typed_only", "strong"}
CUDA_CALL_HELPER = "cuda_call"


@dataclass
class Use:
    file: str
    line: int
    owner: str            # "tensorrt" (module level), a TensorRT class name, or "cuda"
    name: str
    kind: str             # "attr", "call", "override", "cuda_call"
    args: int = 0         # positional arguments (not counting self)
    keywords: tuple = ()
    starred: bool = False
    unpack: int = 0       # `a, b = cudart.f(...)`: how many values the caller takes apart
    guarded: bool = False
    function: str = ""

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def module(self) -> str:
        return "cuda" if self.owner == "cuda" or self.owner.startswith("cuda:") else "tensorrt"

    def what(self) -> str:
        owner = "" if self.owner in ("tensorrt", "cuda") else self.owner.split(":")[-1] + "."
        return ("cudart." if self.module == "cuda" else "trt.") + owner + self.name


def load_snapshots(directory=SNAPSHOTS) -> dict:
    """{"tensorrt": {(major, minor): snapshot}, "cuda": {(major, minor): snapshot}}."""
    out = {"tensorrt": {}, "cuda": {}}
    for path in sorted(Path(directory).glob("*.json")):
        m = re.fullmatch(r"(tensorrt|cuda)_(\d+)\.(\d+)\.json", path.name)
        if m:
            out[m.group(1)][(int(m.group(2)), int(m.group(3)))] = json.loads(path.read_text())
    return out


def source_files(root=ROOT) -> list:
    files = []
    for top in SOURCES:
        files += sorted((Path(root) / top).rglob("*.py"))
    return [f for f in files if "trt" in f.read_text() or "cudart" in f.read_text()]


# --------------------------------------------------------------------------------------------- collection

def _is_guard(test) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Name) and node.id in GUARD_NAMES:
            return True
        if isinstance(node, ast.Attribute) and node.attr in GUARD_NAMES:
            return True
    return False


def _return_class(snapshot, owner, method):
    entry = snapshot["names"].get(owner, {}).get("members", {}).get(method)
    for sig in (entry or {}).get("signatures") or []:
        m = re.match(r"(?:tensorrt\.)?(\w+)", sig.get("returns") or "")
        if m and m.group(1) in snapshot["names"] and snapshot["names"][m.group(1)]["kind"] == "class":
            return m.group(1)
    return None


class _Collector(ast.NodeVisitor):
    """One module: walks each function with a type environment {name: TensorRT class | "trt" | "cuda"}."""

    def __init__(self, path: Path, tree, snapshot, cuda_snapshot=None):
        self.path, self.tree, self.snapshot = path, tree, snapshot
        self.cuda = cuda_snapshot or {"names": {}}
        self.rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        self.uses: list = []
        self.calls: dict = {}   # module function name -> [(guarded?, line)] per call site
        self.env_stack: list = [{}]
        self.guard = 0
        self.function = ""
        self.self_types: dict = {}  # self.<attr> -> class, per module (backends keep _engine, _context, ...)

    # ------------------------------------------------------------------ typing
    def type_of(self, node):
        if isinstance(node, ast.Name):
            for env in reversed(self.env_stack):
                if node.id in env:
                    return env[node.id]
            if node.id in TRT_MODULE_NAMES:
                return "trt"
            if node.id in CUDA_MODULE_NAMES:
                return "cuda"
            return None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return self.self_types.get(node.attr)
        if isinstance(node, ast.Attribute):
            base = self.type_of(node.value)
            names = self.snapshot["names"] if base == "trt" else self.cuda["names"] if base == "cuda" else {}
            if node.attr in names and names[node.attr]["kind"] in ("class", "enum"):
                return ("class", node.attr, base)
            return None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                base = self.type_of(func.value)
                if base == "trt" and func.attr in self.snapshot["names"] \
                        and self.snapshot["names"][func.attr]["kind"] == "class":
                    return func.attr  # a constructor
                if isinstance(base, str) and base not in ("trt", "cuda"):
                    return _return_class(self.snapshot, base, func.attr)
        return None

    def bind(self, target, value_type, value=None):
        if isinstance(target, ast.Name):
            if target.id in TRT_MODULE_NAMES:  # trt, gpu = import_tensorrt(...): the name keeps its meaning
                value_type = "trt"
            elif target.id in CUDA_MODULE_NAMES:
                value_type = "cuda"
            self.env_stack[-1][target.id] = value_type
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            if value_type is not None:
                self.self_types[target.attr] = value_type
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) \
                else [None] * len(target.elts)
            for t, v in zip(target.elts, values):
                self.bind(t, self.type_of(v) if v is not None else None)

    # ------------------------------------------------------------------ recording
    def record(self, node, owner, name, kind, call=None):
        use = Use(self.rel, node.lineno, owner, name, kind, guarded=self.guard > 0, function=self.function)
        if call is not None:
            use.args = len([a for a in call.args if not isinstance(a, ast.Starred)])
            use.starred = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
            use.keywords = tuple(k.arg for k in call.keywords if k.arg)
        self.uses.append(use)

    # ------------------------------------------------------------------ visitors
    def visit_FunctionDef(self, node):
        outer_fn, self.function = self.function, node.name
        params = {a.arg for a in node.args.args + node.args.kwonlyargs}
        assigned = {t.id for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.For, ast.With))
                    for t in ast.walk(n) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)}
        env = {p: PARAMETER_TYPES[p] for p in params if p in PARAMETER_TYPES and p not in assigned}
        env.update({p: None for p in params if p not in PARAMETER_TYPES and p not in TRT_MODULE_NAMES | CUDA_MODULE_NAMES})
        self.env_stack.append(env)
        self.generic_visit(node)
        self.env_stack.pop()
        self.function = outer_fn

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        bases = set()
        for b in node.bases:
            t = self.type_of(b)
            if isinstance(t, tuple) and t[2] == "trt":
                bases.add(t[1])
            elif isinstance(b, ast.Name):  # base = trt.A if ... else trt.B
                for env in reversed(self.env_stack):
                    if isinstance(env.get(b.id), frozenset):
                        bases |= env[b.id]
                        break
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and bases and not item.name.startswith("__"):
                positional = [a.arg for a in item.args.args][1:]
                for base in sorted(bases):
                    members = self.snapshot["names"].get(base, {}).get("members", {})
                    if item.name in members or not members:
                        use = Use(self.rel, item.lineno, base, item.name, "override", guarded=self.guard > 0,
                                  function=node.name)
                        use.args = len(positional)
                        use.starred = item.args.vararg is not None
                        use.keywords = (len(item.args.defaults),)  # how many of them are optional
                        self.uses.append(use)
        self.generic_visit(node)

    def visit_If(self, node):
        guarded = _is_guard(node.test)
        self.visit(node.test)
        self.guard += guarded
        for n in node.body + node.orelse:
            self.visit(n)
        self.guard -= guarded

    def visit_IfExp(self, node):
        guarded = _is_guard(node.test)
        self.visit(node.test)
        self.guard += guarded
        self.visit(node.body)
        self.visit(node.orelse)
        self.guard -= guarded

    def visit_BoolOp(self, node):  # `hasattr(x, "a") and x.a`: what follows the guard is guarded
        guarded = 0
        for value in node.values:
            self.visit(value)
            if _is_guard(value):
                guarded += 1
                self.guard += 1
        self.guard -= guarded

    def visit_Assign(self, node):
        self.visit(node.value)
        if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Call) and self.uses \
                and self.uses[-1].kind == "call" and self.uses[-1].module == "cuda" \
                and self.uses[-1].line == node.value.lineno:
            self.uses[-1].unpack = len(node.targets[0].elts)
        value_type = self.type_of(node.value)
        if value_type is None and isinstance(node.value, ast.IfExp):  # base = trt.A if ... else trt.B
            alts = {self.type_of(v) for v in (node.value.body, node.value.orelse)}
            if all(isinstance(a, tuple) for a in alts):
                value_type = frozenset(a[1] for a in alts)
        for t in node.targets:
            if isinstance(t, ast.Attribute):  # config.int8_calibrator = ...: the property must exist and be settable
                owner = self.type_of(t.value)
                if isinstance(owner, str) and owner not in ("trt", "cuda"):
                    self.record(t, owner, t.attr, "store")
                else:
                    self.visit(t.value)
            self.bind(t, value_type, node.value)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, None)
        for n in node.body:
            self.visit(n)

    def visit_For(self, node):
        self.visit(node.iter)
        self.bind(node.target, None)
        for n in node.body + node.orelse:
            self.visit(n)

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Name):
            self.calls.setdefault(func.id, []).append((self.guard > 0, node.lineno))
            if func.id == CUDA_CALL_HELPER and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                use = Use(self.rel, node.lineno, "cuda", node.args[1].value, "cuda_call", guarded=self.guard > 0,
                          function=self.function)
                use.args = len(node.args) - 2
                self.uses.append(use)
            if func.id == "getattr" and node.args and isinstance(node.args[0], ast.Name) \
                    and self.type_of(node.args[0]) == "cuda" and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant):
                self.record(node, "cuda", node.args[1].value, "attr")
        if isinstance(func, ast.Attribute):
            owner = self.type_of(func.value)
            if owner == "trt":
                self.record(node, "tensorrt", func.attr, "call", node)
                self.visit_args(node)
                return
            if owner == "cuda":
                self.record(node, "cuda", func.attr, "call", node)
                self.visit_args(node)
                return
            if isinstance(owner, tuple) and owner[2] == "cuda":
                self.record(node, "cuda:" + owner[1], func.attr, "call", node)
                self.visit_args(node)
                return
            if isinstance(owner, tuple):  # trt.Class.method(...) : an unbound call, self is the first argument
                self.record(node, owner[1], func.attr, "call", node)
                self.uses[-1].args -= 1
                self.visit_args(node)
                self.visit(func.value)
                return
            if isinstance(owner, str):
                self.record(node, owner, func.attr, "call", node)
                self.visit(func.value)
                self.visit_args(node)
                return
        self.generic_visit(node)

    def visit_args(self, node):
        for a in node.args:
            self.visit(a)
        for k in node.keywords:
            self.visit(k.value)

    def visit_Attribute(self, node):
        owner = self.type_of(node.value)
        if owner == "trt":
            self.record(node, "tensorrt", node.attr, "attr")
            return
        if owner == "cuda":
            self.record(node, "cuda", node.attr, "attr")
            return
        if isinstance(owner, tuple):  # trt.BuilderFlag.FP16, trt.Logger.WARNING, cudart.cudaMemcpyKind.X
            self.record(node, owner[1] if owner[2] == "trt" else "cuda:" + owner[1], node.attr, "attr")
            self.visit(node.value)
            return
        if isinstance(owner, str):
            self.record(node, owner, node.attr, "attr")
        self.generic_visit(node)


def collect(snapshot, files=None, cuda_snapshot=None) -> list:
    """The uses in `files` (default: the project's source), typed with these snapshots (return types, enums)."""
    modules = []  # (path, tree, collector)
    for path in files or source_files():
        path = Path(path)
        tree = ast.parse(path.read_text(), str(path))
        c = _Collector(path, tree, snapshot, cuda_snapshot)
        c.visit(tree)
        modules.append((path, tree, c))
    # a function called only from guarded places (or from functions that are) is itself version-specific; its
    # call sites are in its own module and in the modules that import it by name (a module split by job)
    local = {path: {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
             for path, tree, _c in modules}
    sites = {}  # (defining path, name) -> [(calling path, guarded?, line)]
    for path, tree, c in modules:
        imported = _imported_names(path, tree, local)
        for name, calls in c.calls.items():
            target = (path, name) if name in local[path] else imported.get(name)
            if target is not None:
                sites.setdefault(target, []).extend((path, g, line) for g, line in calls)
    guarded_fns, changed = set(), True
    while changed:
        changed = False
        for path, fns in local.items():
            for name in fns:
                calls = sites.get((path, name), [])
                if (path, name) not in guarded_fns and calls and all(
                        g or any(p == at and _inside(local[p][f], line) for p, f in guarded_fns)
                        for at, g, line in calls):
                    guarded_fns.add((path, name))
                    changed = True
    uses = []
    for path, _tree, c in modules:
        for use in c.uses:
            if any(p == path and _inside(local[p][f], use.line) for p, f in guarded_fns):
                use.guarded = True
        uses += c.uses
    return uses


def _imported_names(path: Path, tree, local: dict) -> dict:
    """{name as called here: (defining path, name there)} for `from MODULE import name` of a module in `local`."""
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # from .x import y: relative to this file's folder
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            parts = (node.module or "").split(".") if node.module else []
            candidates = [base.joinpath(*parts).with_suffix(".py") if parts else base / "__init__.py"]
        else:  # osnet_edge.export.x -> export/x.py (setup.py's package_dir), osnet_edge.x -> osnet_edge/x.py
            parts = (node.module or "").split(".")
            if parts[0] != "osnet_edge":
                continue
            tops = [parts[1]] if len(parts) > 1 and parts[1] in SOURCES[1:] else []
            rest = parts[2:] if tops else parts[1:]
            root = ROOT.joinpath(*(tops or ["osnet_edge"]))
            candidates = [root.joinpath(*rest).with_suffix(".py") if rest else root / "__init__.py"]
        for cand in candidates:
            for known in local:
                if known.resolve() == cand.resolve():
                    for alias in node.names:
                        if alias.name in local[known]:
                            out[alias.asname or alias.name] = (known, alias.name)
    return out


def _inside(fn, line) -> bool:
    return fn.lineno <= line <= (fn.end_lineno or fn.lineno)


# --------------------------------------------------------------------------------------------- checking

def _accepts(sig, args: int, keywords, starred: bool) -> bool:
    """Whether a call with `args` positionals (self excluded) and these keyword names fits the signature."""
    params = list(sig["params"])
    if params and params[0].rstrip("=/") in ("self", "cls"):
        params = params[1:]
    names = [p.rstrip("=/") for p in params]
    var_pos = any(p.startswith("*") and not p.startswith("**") and not p.startswith("*:") for p in params)
    var_kw = any(p.startswith("**") for p in params)
    positional = [p for p in params if not p.startswith("*")]
    if starred:
        return True
    if args > len(positional) and not var_pos:
        return False
    for k in keywords:
        if k not in [n.lstrip("*:") for n in names] and not var_kw:
            return False
    required = [p for p in positional if not p.rstrip("/").endswith("=")]
    filled = args + sum(1 for p in required[args:] if p.rstrip("/") in keywords)
    return filled >= len(required)


def _member(snapshot, owner, name):
    names = snapshot["names"]
    owner = owner.split(":")[-1]
    if owner in ("tensorrt", "cuda"):
        return names.get(name)
    entry = names.get(owner)
    if entry is None:
        return None
    if entry["kind"] == "enum":
        return {"kind": "value"} if name in entry["members"] or name in ("name", "value") else None
    members = entry.get("members", {})
    if name in members:
        return members[name]
    for base in entry.get("bases", []):  # inherited (pybind11 lists them in dir() anyway)
        found = _member(snapshot, base, name)
        if found is not None:
            return found
    return None


def check_use(use: Use, snapshot) -> str | None:
    """None when the snapshot has `use` with a fitting signature; else what is wrong."""
    if use.owner in ("tensorrt", "cuda") and use.name.startswith("__") and use.name != "__version__":
        return None  # a module's own dunders (__name__, __file__) always exist
    entry = _member(snapshot, use.owner, use.name)
    module = "cuda-python" if snapshot["module"].startswith("cuda") else "TensorRT"
    version = f"{module} {snapshot['version']}"
    if entry is None:
        return f"{use.what()} does not exist in {version}"
    if use.kind in ("call", "cuda_call") and entry.get("kind") in ("method", "function", "static"):
        sigs = entry.get("signatures") or []
        if sigs and not any(_accepts(s, use.args, use.keywords, use.starred) for s in sigs):
            shown = " | ".join("(" + ", ".join(s["params"]) + ")" for s in sigs)
            return (f"{use.what()} called with {use.args} positional argument(s)"
                    + (f" and {', '.join(use.keywords)}=" if use.keywords else "") + f"; {version} has {shown}")
    if use.unpack and entry.get("returns") and len(entry["returns"]) != use.unpack:
        return (f"{use.what()} is unpacked into {use.unpack} values; in {version} it returns "
                f"({', '.join(entry['returns'])})")
    if use.kind == "cuda_call":
        returns = entry.get("returns") or []
        if not returns or not returns[0].startswith("cudaError_t"):
            return f"{use.what()} in {version} does not return (cudaError_t, ...): cuda_call cannot unpack it"
    if use.kind == "store" and entry.get("kind") == "property" and entry.get("readonly"):
        return f"{use.what()} is read-only in {version}"
    if use.kind == "store" and entry.get("kind") not in ("property", None):
        return f"{use.what()} is a {entry.get('kind')} in {version}, not a settable property"
    if use.kind == "override":
        sigs = entry.get("signatures") or []
        optional = use.keywords[0] if use.keywords else 0
        ok = not sigs or any(
            (use.starred or len(s["params"]) - 1 <= use.args) and use.args - optional <= len(s["params"]) - 1
            for s in sigs)
        if not ok:
            shown = " | ".join("(" + ", ".join(s["params"]) + ")" for s in sigs)
            return (f"{use.owner}.{use.name} overridden with {use.args} parameter(s) after self; TensorRT calls it as "
                    f"{shown} in {version}")
    return None


def version_pairs(snapshots: dict) -> list:
    """(tensorrt snapshot, cuda snapshot) pairs covering every snapshot: oldest with oldest, newest with newest."""
    trt, cuda = [snapshots["tensorrt"][k] for k in sorted(snapshots["tensorrt"])], \
        [snapshots["cuda"][k] for k in sorted(snapshots["cuda"])]
    n = max(len(trt), len(cuda))
    return [(trt[min(i, len(trt) - 1)], cuda[min(i, len(cuda) - 1)]) for i in range(n)]


def problems(snapshots: dict, files=None) -> list:
    """Everything wrong with the project's calls against the supported versions' snapshots, as lines.

    Unguarded uses must fit every snapshot; guarded ones (version-specific code) at least one, and fit
    every snapshot that has them."""
    out, results = [], {}
    for trt_snap, cuda_snap in version_pairs(snapshots):
        for use in collect(trt_snap, files, cuda_snap):
            snap = cuda_snap if use.module == "cuda" else trt_snap
            key = (use.file, use.line, use.owner, use.name, use.kind)
            results.setdefault(key, {})[snap["version"]] = (use, check_use(use, snap))
    for key in sorted(results):
        found = list(results[key].values())
        use = found[0][0]
        missing = [p for _u, p in found if p and "does not exist" in p]
        wrong = [p for _u, p in found if p and "does not exist" not in p]
        out += [f"{use.where()}: {p}" for p in wrong]
        if missing and (not use.guarded or len(missing) == len(found)):
            out.append(f"{use.where()}: " + "; ".join(missing) + ("" if use.guarded else " (not under a version guard)"))
    return out


def deprecated_uses(snapshots: dict, files=None) -> list:
    """Unguarded uses that a snapshot marks [DEPRECATED]: they work today and are what the next release drops."""
    out = set()
    for snap, cuda_snap in version_pairs(snapshots):
        for use in collect(snap, files, cuda_snap):
            if use.guarded or use.module == "cuda":
                continue
            owner = snap["names"].get(use.owner) if use.owner != "tensorrt" else None
            if owner and owner.get("kind") == "enum" and use.name in owner.get("deprecated", []):
                out.add(f"{use.where()}: {use.what()} is deprecated in TensorRT {snap['version']}")
            entry = _member(snap, use.owner, use.name)
            if isinstance(entry, dict) and entry.get("deprecated") is True:
                out.add(f"{use.where()}: {use.what()} is deprecated in TensorRT {snap['version']}")
    return sorted(out)
