#!/usr/bin/env python3
"""A one-image query on the path an AVX2-only CPU takes, counted in instructions.

ONNX Runtime picks its kernels (MLAS) from CPUID and has no setting that holds them to
AVX2, so on a CPU with AVX-512 its AVX2 path cannot be timed. Under valgrind it can be
run: valgrind's CPU has AVX2 and FMA but no AVX-512 (numpy's own CPU-feature table,
printed below, says so), so ONNX Runtime and numpy take the kernels an AVX2-only CPU
takes. callgrind counts the instructions each process executes, the same from run to run
whatever else the machine is doing; instructions are not seconds, so the shares below are
of work done, not of time.

For this tree (and --baseline's, in the same run), three processes under callgrind:
  query      `python -m imgsim_index query IMAGE --index IDX --top-k 5 --verify off`
  embedding  a fresh process that imports what a query imports anyway (numpy, the
             library), then makes the ONNX session and embeds the image as `query` does
  imports    the same process without the session and the image
The embedding is `embedding - imports`; its share is that over `query`. The embedding
process also prints the image's vector, which is compared with the vector the same code
computes natively (AVX-512 kernels where the CPU has them): both paths give one result.

ONNX Runtime optimises the graph for the CPU it sees (NCHWc block sizes differ between
AVX2 and AVX-512), so the runs under valgrind use a cache folder of their own, seeded with
the exported network only; its first two queries (not counted) optimise the graph for
AVX2 and keep the files' digests.

usage: python benchmarks/bench_query_avx2.py [--n 96] [--model efficientnet-lite0|resnet50]
                                             [--baseline TREE [--baseline-commit C]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_common import photos  # noqa: E402
from benchmarks.bench_startup import AVX2, EMBED_ENV, MODEL, PYCACHE, ROOT, child_env  # noqa: E402
from benchmarks.results_file import cpu_features, machine, this_command, update_section  # noqa: E402

_IMPORTS = """
import json, sys
import numpy
from imgsim_index.embed.embedder import Embedder, EmbedSettings
from imgsim_index.pipeline.build import BuildSettings, resolve_model
index, image = sys.argv[1:3]
"""
# `defer_session` is newer than some trees measured against: without it, the session is
# made before the image decodes (what those trees' query did)
_EMBEDDING = _IMPORTS + """
model = resolve_model(index, BuildSettings())
try:
    emb = Embedder(model, "auto", "auto", defer_session=True)
except TypeError:
    emb = Embedder(model, "auto", "auto")
batch = next(iter(emb.embed_files([image], EmbedSettings(workers=0))))
print(json.dumps(batch.vectors[0].tolist()))
"""
_FEATURES = ("from numpy._core._multiarray_umath import __cpu_features__ as f\n"
             "print(' '.join(k for k in ('AVX2', 'FMA3', 'AVX512F', 'AVX512_SKX') if f[k]))")


def run(args: list[str], tree: Path, cache: str, callgrind: bool) -> tuple[int | None, str]:
    """(instructions under callgrind or None, stdout) of one process of `tree`'s code."""
    pre = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] if callgrind else []
    env = child_env(tree, {**AVX2, **EMBED_ENV, "XDG_CACHE_HOME": cache})
    p = subprocess.run([*pre, sys.executable, *args], capture_output=True, text=True,
                       env=env, cwd=tree, check=True)
    found = re.search(r"Collected : (\d+)", p.stderr)
    return (int(found.group(1)) if found else None), p.stdout


def seed_cache(native: str, cache: str, model: str) -> None:
    """The exported network (not the graph optimised for this CPU) and the weights'
    digests in a cache of its own (without them, torch would be imported and run)."""
    src, dst = Path(native) / "imgsim-index", Path(cache) / "imgsim-index"
    (dst / "onnx").mkdir(parents=True, exist_ok=True)
    for f in (src / "onnx").glob(f"{model}-*"):
        if ".optimized." not in f.name:
            shutil.copy2(f, dst / "onnx" / f.name)
    for f in src.glob("*.json"):  # the weights' digests
        shutil.copy2(f, dst / f.name)


def measure(tree: Path, index: Path, image: Path, cache: str
            ) -> dict[str, float | int]:
    query = ["-m", "imgsim_index", "query", str(image), "--index", str(index),
             "--top-k", "5", "--verify", "off"]
    for _ in range(2):  # optimises the graph for AVX2, then keeps its digest: not counted
        run(query, tree, cache, callgrind=True)
    q, _ = run(query, tree, cache, callgrind=True)
    e, out = run(["-c", _EMBEDDING, str(index), str(image)], tree, cache, callgrind=True)
    i, _ = run(["-c", _IMPORTS, str(index), str(image)], tree, cache, callgrind=True)
    assert q and e and i
    avx2 = np.asarray(json.loads(out.splitlines()[-1]), np.float64)
    native_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    _, out = run(["-c", _EMBEDDING, str(index), str(image)], tree, native_cache, False)
    native = np.asarray(json.loads(out.splitlines()[-1]), np.float64)
    return {"query": q, "embedding": e - i, "dot": float(avx2 @ native),
            "max_diff": float(np.abs(avx2 - native).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96, help="images in the queried index")
    ap.add_argument("--model", default=MODEL, choices=[MODEL, "resnet50"],
                    help="resnet50: the default model, with randomly initialised weights "
                         "(ImageNet's cannot be downloaded here; the work is the same)")
    ap.add_argument("--baseline", default=None, help="source tree of the code to compare with")
    ap.add_argument("--baseline-commit", default=None,
                    help="the commit --baseline was unpacked from (named in the results)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    trees = [("this tree", ROOT)] + ([("before", Path(args.baseline).resolve())]
                                     if args.baseline else [])
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        PYCACHE["dir"] = str(t / "pycache")
        native_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        seen = run(["-c", _FEATURES], ROOT, native_cache, callgrind=False)[1].strip()
        under = run(["-c", _FEATURES], ROOT, native_cache, callgrind=True)[1].strip()
        photos(t / "photos", args.n)
        image = next((t / "photos").rglob("*.jpg"))
        model = ["--model", args.model]
        if args.model == "resnet50":
            import torch
            from torchvision.models import resnet50

            torch.manual_seed(0)  # the same file every run: its ONNX export is cached once
            torch.save(resnet50(weights=None).state_dict(), t / "resnet50-random.pth")
            model += ["--weights", str(t / "resnet50-random.pth")]
        for name, tree in trees:
            index = t / f"idx-{len(rows)}"
            run(["-m", "imgsim_index", "build", str(t / "photos"), "--index", str(index),
                 *model, "-q"], tree, native_cache, callgrind=False)
            cache = str(t / f"cache-{len(rows)}")
            seed_cache(native_cache, cache, args.model)
            r = measure(tree, index, image, cache)
            print(name, r, flush=True)
            rows.append(
                f"| {name} | {r['query'] / 1e9:.3f} | {r['embedding'] / 1e9:.3f} | "
                f"{r['embedding'] / r['query']:.0%} | {r['dot']:.7f} | "
                f"{r['max_diff']:.1e} |")
    body = (
        f"CPU: {machine()}; {cpu_features()}. numpy's CPU features: natively `{seen}`, "
        f"under valgrind `{under}`. Model {args.model}; a query of one 1280x960 JPEG on an "
        f"index of {args.n}, `--top-k 5 --verify off`; instructions counted by callgrind "
        "(billions).\n\n"
        "| code | query process | the image's embedding | embedding's share | "
        "dot product, AVX2 vector with native | largest coordinate difference |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(body)
    command = this_command()
    if args.baseline:
        command = command.replace(args.baseline, "TREE")
        body = (f"TREE: `git archive {args.baseline_commit}` unpacked (the code \"before\")."
                "\n\n" if args.baseline_commit else "TREE: another commit's source tree.\n\n"
                ) + body
    suffix = "" if args.model == MODEL else f"-{args.model}"
    update_section(f"query_avx2{suffix}", "A one-image query on the AVX2 path, in "
                   f"instructions ({args.model})", command, body)


if __name__ == "__main__":
    main()
