#!/usr/bin/env python3
"""What the perceptual-hash candidate channel costs: `dedupe FOLDER --index NEW` with it,
against a cosine-only dedupe and against the same dedupe without the channel, and the bytes
its hashes take in the index against the vectors.

usage: python benchmarks/bench_hash_channel.py --evalset DIR --baseline TREE [--repeats 3]
         [--model efficientnet-lite0]

Two folders: the evaluation set's images, and a generated one of scikit-image photos with
their grey, turned and mirrored copies (what the channel is for). For each, the median of
--repeats runs (wall seconds, with the child's CPU seconds) of: this code with `--verify off`
(cosine only), TREE (code without the channel, verification on) and this code (verification
and the channel). Storage: the catalog's size with and without the hash table (dropped from
a copy, then VACUUM), against the vector files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_verify import report_of, run  # noqa: E402
from benchmarks.results_file import this_command, update_section  # noqa: E402


def copies_folder(out: Path) -> Path:
    """scikit-image photos, each with grey, rot90/180/270 and mirrored (+ turned) copies."""
    import numpy as np
    import skimage.data as skdata
    from PIL import Image

    t = Image.Transpose
    edits = {"grey": lambda im: im.convert("L"), "rot90": lambda im: im.transpose(t.ROTATE_90),
             "rot180": lambda im: im.transpose(t.ROTATE_180),
             "rot270": lambda im: im.transpose(t.ROTATE_270),
             "mirror": lambda im: im.transpose(t.FLIP_LEFT_RIGHT),
             "mirror_rot90": lambda im: im.transpose(t.TRANSPOSE)}
    out.mkdir(parents=True)
    for name in ("astronaut", "rocket", "coffee", "chelsea", "immunohistochemistry"):
        im = Image.fromarray(np.ascontiguousarray(getattr(skdata, name)())).convert("RGB")
        im.save(out / f"{name}.jpg", quality=90)
        for edit, fn in edits.items():
            fn(im).save(out / f"{name}_{edit}.jpg", quality=90)
    for name in ("hubble_deep_field", "retina", "coins", "camera"):
        Image.fromarray(getattr(skdata, name)()).convert("RGB").save(out / f"{name}.jpg",
                                                                        quality=90)
    return out


def storage(index: Path) -> str:
    """Bytes of the hashes (the catalog with and without them) against the vector files."""
    vectors = sum(p.stat().st_size for p in [index / "vectors.faiss", *index.glob("segments/*")]
                  if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "c.sqlite"
        db = sqlite3.connect(index / "catalog.sqlite")
        db.execute("VACUUM INTO ?", (str(copy),))
        n = db.execute("SELECT COUNT(*) FROM image_hashes").fetchone()[0]
        db.close()
        with_hashes = copy.stat().st_size
        db = sqlite3.connect(copy)
        db.execute("DROP TABLE image_hashes")
        db.commit()
        db.execute("VACUUM")
        db.close()
        without = copy.stat().st_size
    hashes = with_hashes - without
    return (f"{n} hashes take {hashes} bytes of the catalog ({hashes / max(n, 1):.0f} B per "
            f"image, {32 * n} B of hash payload); the vector files {vectors} bytes: "
            f"{100 * hashes / max(vectors, 1):.2f}% of the vectors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalset", required=True, help="an evaluation set (with images/)")
    ap.add_argument("--baseline", required=True, help="source tree without the hash channel")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="efficientnet-lite0")
    a = ap.parse_args()
    runs = [("this, --verify off (cosine only)", ROOT, "off"),
            ("before the channel, verified", Path(a.baseline), "on"),
            ("this, verified + hash channel", ROOT, "on")]
    rows = ["| folder | code | wall s (CPU s) | CPU vs cosine only | CPU vs before | pairs | "
            "hash-only candidates |", "|---|---|---|---|---|---|---|"]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = [("evaluation set", Path(a.evalset) / "images"),
                ("grey/turned copies", copies_folder(Path(tmp) / "copies"))]
        for name, folder in sets:
            cpu0 = cpu_before = 0.0
            for k, (code, tree, verify) in enumerate(runs):
                walls, cpus = [], []
                for r in range(a.repeats):
                    where = Path(tmp) / f"idx-{name[:4]}-{k}-{r}"
                    w, c, out = run(tree, ["dedupe", str(folder), "--index", str(where),
                                           "--model", a.model, "--verify", verify,
                                           "--output", str(Path(tmp) / "out"), "-q"])
                    walls.append(w)
                    cpus.append(c)
                    if r < a.repeats - 1:
                        shutil.rmtree(where)
                rep = report_of(out)
                wall, cpu = statistics.median(walls), statistics.median(cpus)
                cpu0 = cpu if k == 0 else cpu0
                cpu_before = cpu if k == 1 else cpu_before
                hashed = rep["verification"].get("hash_candidates", "-")
                rows.append(f"| {name} | {code} | {wall:.2f} ({cpu:.2f}) | {cpu / cpu0:.2f}x | "
                            f"{cpu / cpu_before:.2f}x | {rep['number_of_similar_pairs']} | "
                            f"{hashed} |" if k else
                            f"| {name} | {code} | {wall:.2f} ({cpu:.2f}) | 1.00x | - | "
                            f"{rep['number_of_similar_pairs']} | - |")
                if k == 2:
                    notes.append(f"- {name}: {storage(where)}; groups of 2+: "
                                 f"{sum(g['size'] > 1 for g in rep['groups'])}, files "
                                 f"removable {rep['files_removable']}.")
    body = "\n".join([
        f"Model: {a.model}. `dedupe FOLDER --index NEW` (decode, embed, pair search, "
        f"verification, report, gallery), median of {a.repeats} runs each, wall seconds with "
        "the child's CPU seconds in brackets; ratios of CPU seconds. 'before' is the code "
        "without the hash channel, run in the same session.", "", *rows, "", *notes])
    print(body)
    update_section(f"hash-channel-{a.model}", f"Hash channel cost ({a.model})", this_command(),
                   body)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
