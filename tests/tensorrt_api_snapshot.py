"""Snapshot of the REAL tensorrt / cuda-python Python API (names, enum members, call signatures) as JSON.

Run inside a virtualenv that holds the real modules (tests/tensorrt_api_env.sh makes one; `make check-tensorrt`
runs both steps):

    .cache/trt-api-11/bin/python tests/tensorrt_api_snapshot.py tests/data/tensorrt_api

writes tests/data/tensorrt_api/tensorrt_<major.minor>.json and cuda_<major.minor>.json. The snapshots are what
tests/test_tensorrt_api.py checks the project's calls and its test stand-ins against, without TensorRT.
Signatures come from the bindings themselves: pybind11's docstring first lines for tensorrt, Cython's
embedded signatures (inspect) and the numpydoc "Returns" section for cuda-python's (err, value...) tuples.
Standard library only, so it runs in the bare check environment.
"""
from __future__ import annotations

import enum
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

_OPEN, _CLOSE = "([{", ")]}"


def split_top(text: str, sep: str = ",") -> list:
    """Split on sep outside brackets and quotes ('a: list[int, int], b = (1, 2)' -> 2 parts)."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _strip_module(text: str) -> str:
    return re.sub(r"\btensorrt(?:_bindings)?\.tensorrt\.", "", re.sub(r"\btensorrt_bindings\.", "", text)).strip()


def _param(name: str, kind: str, default: bool) -> str:
    """One parameter, compactly: 'x', 'x=' (has a default), '*x', '**x', 'x/' (positional only), '*:x' (keyword only)."""
    prefix = {"var_positional": "*", "var_keyword": "**", "keyword_only": "*:"}.get(kind, "")
    return prefix + name + ("=" if default else "") + ("/" if kind == "positional_only" else "")


def deprecated(doc) -> bool:
    return "[DEPRECATED]" in (doc or "")


def _deprecated_members(cls) -> list:
    """Enum members whose line in the enum's docstring says [DEPRECATED] (pybind11 lists members there)."""
    doc, out, current = getattr(cls, "__doc__", "") or "", set(), None
    for line in doc.splitlines():
        m = re.match(r"\s{2}(\w+) :\s*(.*)", line)
        if m:
            current, line = m.group(1), m.group(2)
        # the member's own deprecation opens a line; one mentioned inside a sentence is about something else
        if current and line.strip().startswith("[DEPRECATED]"):
            out.add(current)
    return sorted(out & set(_enum_members(cls)))


def parse_pybind_signature(line: str, name: str):
    """'name(self: X, a: int, b: int = 0) -> R' -> {"params": [...], "returns": "R"}; None if not a signature."""
    line = line.strip()
    m = re.match(r"(?:\d+\.\s*)?" + re.escape(name) + r"\(", line)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(line) and depth:
        depth += (line[i] in _OPEN) - (line[i] in _CLOSE)
        i += 1
    inner, rest = line[m.end():i - 1], line[i:]
    params = []
    for part in split_top(inner):
        if part in ("*", "/"):
            continue
        head, _, default = part.partition("=")
        pname, _, ptype = head.partition(":")
        pname = pname.strip()
        kind = "var_keyword" if pname.startswith("**") else "var_positional" if pname.startswith("*") else ""
        params.append(_param(pname.lstrip("*"), kind, bool(default.strip())))
    returns = _strip_module(rest.split("->", 1)[1]) if "->" in rest else None
    return {"params": params, "returns": returns}


def pybind_signatures(obj, name: str) -> list:
    """Every overload's signature from a pybind11 callable's docstring."""
    doc = getattr(obj, "__doc__", None) or ""
    lines = doc.strip().splitlines()
    if not lines:
        return []
    sigs = []
    if "Overloaded function." in doc:
        for line in lines:
            if re.match(r"\d+\.\s*" + re.escape(name) + r"\(", line.strip()):
                sigs.append(parse_pybind_signature(line, name))
    else:
        sig = parse_pybind_signature(lines[0], name)
        if sig:
            sigs.append(sig)
    return [s for s in sigs if s]


def python_signature(fn) -> list:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    kinds = {inspect.Parameter.VAR_POSITIONAL: "var_positional", inspect.Parameter.VAR_KEYWORD: "var_keyword",
             inspect.Parameter.KEYWORD_ONLY: "keyword_only", inspect.Parameter.POSITIONAL_ONLY: "positional_only"}
    params = [_param(p.name, kinds.get(p.kind, ""), p.default is not p.empty) for p in sig.parameters.values()]
    return [{"params": params, "returns": None}]


def _is_enum(cls) -> bool:
    return isinstance(cls, type) and (issubclass(cls, enum.Enum) or hasattr(cls, "__members__"))


def _enum_members(cls) -> list:
    return sorted(str(k) for k in getattr(cls, "__members__", {}))


def describe_member(cls, name: str):
    raw = inspect.getattr_static(cls, name, None)
    if isinstance(raw, property) or type(raw).__name__ == "property":
        return {"kind": "property", "readonly": getattr(raw, "fset", None) is None,
                "deprecated": deprecated(getattr(raw, "__doc__", ""))}
    value = getattr(cls, name, None)
    if isinstance(raw, staticmethod) or type(raw).__name__ == "builtin_function_or_method":
        return {"kind": "static", "signatures": pybind_signatures(value, name) or python_signature(value)}
    if callable(raw) and type(raw).__name__ in ("instancemethod", "function", "method_descriptor",
                                                  "wrapper_descriptor", "cython_function_or_method"):
        sigs = pybind_signatures(value, name) if type(raw).__name__ == "instancemethod" else python_signature(value)
        return {"kind": "method", "signatures": sigs, "deprecated": deprecated(getattr(value, "__doc__", ""))}
    if _is_enum(value):
        return {"kind": "enum", "members": _enum_members(value), "deprecated": _deprecated_members(value)}
    if isinstance(value, type):
        return {"kind": "class"}
    return {"kind": "value", "type": type(value).__name__}


def describe_class(cls) -> dict:
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        if name in ("name", "value") and _is_enum(cls):
            continue
        members[name] = describe_member(cls, name)
    bases = [b.__name__ for b in cls.__mro__[1:] if b.__module__ not in ("builtins", "pybind11_builtins")]
    return {"kind": "class", "bases": bases, "members": members, "deprecated": deprecated(cls.__doc__)}


def snapshot_tensorrt() -> dict:
    import tensorrt as trt

    names = {}
    for name in dir(trt):
        if name.startswith("_") or name in ("os", "sys", "ctypes", "warnings", "attr", "value", "tensorrt"):
            continue
        obj = getattr(trt, name)
        if _is_enum(obj):
            names[name] = {"kind": "enum", "members": _enum_members(obj), "deprecated": _deprecated_members(obj)}
        elif isinstance(obj, type):
            names[name] = describe_class(obj)
        elif callable(obj):
            names[name] = {"kind": "function", "signatures": pybind_signatures(obj, name) or python_signature(obj)}
        else:
            names[name] = {"kind": "value", "type": type(obj).__name__}
    names["__version__"] = {"kind": "value", "type": "str"}
    return {"module": "tensorrt", "version": trt.__version__, "bindings": trt.Builder.__module__, "names": names}


def numpydoc_returns(doc: str) -> list:
    """The names of a cuda-python function's returned tuple, from its 'Returns' section (err first)."""
    m = list(re.finditer(r"\n([ \t]*)Returns\n[ \t]*-+\n", doc or ""))
    if not m:
        return []
    indent = m[-1].group(1)
    lines = doc[m[-1].end():].splitlines()
    out = []
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"[ \t]*-{3,}", lines[i + 1]):
            break  # the next section's header ("See Also")
        if line.strip() and line.startswith(indent) and not line[len(indent):len(indent) + 1].isspace():
            out.append(line.split(":")[0].strip())
    return out


def snapshot_cuda() -> dict:
    import warnings

    layouts = {}
    for mod in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            with warnings.catch_warnings():  # 12.8+ warns that cuda.cudart is deprecated: that is the point
                warnings.simplefilter("ignore", FutureWarning)
                importlib.import_module(mod)
            layouts[mod] = True
        except Exception:
            layouts[mod] = False
    try:
        from cuda.bindings import runtime as rt
    except ImportError:  # cuda-python < 12.8
        from cuda import cudart as rt

    try:
        from cuda import bindings
        version = bindings.__version__
    except Exception:  # cuda-python < 12.8 has no cuda.bindings package
        version = "unknown"
    names = {}
    for name in dir(rt):
        if not name.startswith("cuda"):
            continue
        obj = getattr(rt, name)
        if _is_enum(obj):
            names[name] = {"kind": "enum", "members": _enum_members(obj)}
        elif isinstance(obj, type):
            names[name] = {"kind": "class", "members": {n: {"kind": "method"} for n in ("getPtr",) if hasattr(obj, n)}}
        elif callable(obj):
            names[name] = {"kind": "function", "signatures": python_signature(obj),
                           "returns": numpydoc_returns(obj.__doc__)}
    return {"module": "cuda.bindings.runtime", "version": version, "layouts": layouts, "names": names}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "tests/data/tensorrt_api")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for snap, stem in ((snapshot_tensorrt(), "tensorrt"), (snapshot_cuda(), "cuda")):
        release = re.match(r"\d+\.\d+", snap["version"])
        path = out / f"{stem}_{release.group(0) if release else 'unknown'}.json"
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(snap, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        written.append(f"{path} ({snap['module']} {snap['version']}, {len(snap['names'])} names)")
    print("\n".join(written))


if __name__ == "__main__":
    main()
