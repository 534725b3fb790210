"""Storage policies compared in one run: fixed 224x224 center crops (re-encoded) against whole
images (``--resize-mode keep --max-side 512``), on natural photos.

    python benchmarks/whole_bench.py [--photos 2000] [--camera 48] [--rounds 3]
                                     [--data DIR] [--json benchmarks/results/whole-bench.json]

Inputs (``benchmarks/photos.py``, drawn once into ``--data``): 500x375 photos, which already
fit ``--max-side 512`` (whole-image conversion stores them byte for byte), and 4000x3000
(12-megapixel) camera photos, which it decodes at a reduced DCT scale and re-encodes.

Rows, each a whole ``convert()`` on Ray (Ray started and warmed up before; listing, workers
and commit timed), rounds interleaved and their order alternated so that a neighbour's load
falls on both policies alike:
  * center-crop 224   - today's default: decode at the smallest DCT scale, crop, resize,
                        encode at quality 90
  * keep, max side 512 - whole images, aspect kept
Per row: images/s, CPU per image (this process and the Ray processes it started: the
policy's cost whatever else loads the machine), shard bytes per image (from the manifest),
records stored as they are.
Also, per image in this process (no Ray): the library call of each policy, and the check a
byte-for-byte record gets (a 1/8-scale greyscale decode) against a full decode; and how strict
that check is (``damage_study``: truncated and bit-flipped copies of a photo, judged by it
and by a full-size strict decode; ``--damage-only`` runs just that).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

POLICIES = {
    "center-crop 224": dict(size=224, resize_mode="center-crop"),
    "keep, max side 512": dict(resize_mode="keep", max_side=512),
}


def _inputs(data: str, photos: int, camera: int):
    import photos as photo_set  # benchmarks/photos.py, beside this script

    sets = {}
    for name, n, size in (("500x375", photos, (500, 375)), ("4000x3000", camera, (4000, 3000))):
        if n <= 0:
            continue
        folder = os.path.join(data, f"photos-{name}-{n}")
        if not os.path.isdir(folder):
            print(f"drawing {n} photos of {name} into {folder} ...", flush=True)
            photo_set.make(folder, n, *size)
        sets[name] = folder
    return sets


def _files(folder):
    return sorted(glob.glob(os.path.join(folder, "*", "*.jpg")))


def bench_convert(src: str, out: str, policy: dict):
    from ray_ingest.bench.measure import cpu_delta, cpu_snapshot
    from ray_ingest.convert import convert

    before = cpu_snapshot()
    t = time.perf_counter()
    r = convert(src, out, overwrite=True, show_progress=False, **policy)
    seconds = time.perf_counter() - t
    cpu = cpu_delta(before, cpu_snapshot())
    assert r.num_written == r.num_inputs, r.summary_line()
    sizes = r.manifest.get("image_sizes") or {}
    return {"images": r.num_inputs, "seconds": seconds,
            "images_per_second": r.num_inputs / seconds,
            "cpu_us_per_image": 1e6 * cpu / r.num_inputs,
            "bytes_per_image": r.num_bytes / r.num_written,
            "stored_as_is": sizes.get("stored_as_is", 0)}


def per_image_costs(files, repeats: int = 3):
    """CPU microseconds per image of each policy's library call and of the checks, in this
    process (best of ``repeats``; CPU time, so that other jobs on the machine do not count)."""
    import simplejpeg

    from ray_ingest.convert.images import ImageSpec, convert_image, encode_pixels, resize_image

    datas = []
    for f in files:
        with open(f, "rb") as g:
            datas.append(g.read())
    calls = {name: (lambda d, s=ImageSpec(**policy): convert_image(d, s))
             for name, policy in POLICIES.items()}
    keep = ImageSpec(**POLICIES["keep, max side 512"])
    calls["keep, max side 512, without DCT scaling"] = lambda d: encode_pixels(
        resize_image(simplejpeg.decode_jpeg(d, colorspace="RGB"), keep), keep)
    calls["check: 1/8-scale greyscale decode"] = lambda d: simplejpeg.decode_jpeg(
        d, colorspace="GRAY", fastdct=True, fastupsample=True, min_height=1, min_width=1)
    calls["check: full decode"] = lambda d: simplejpeg.decode_jpeg(d, colorspace="RGB")
    out = {}
    for name, fn in calls.items():
        best = float("inf")
        for _ in range(repeats):
            t = time.process_time()
            for d in datas:
                fn(d)
            best = min(best, time.process_time() - t)
        out[name] = 1e6 * best / len(datas)
    return out


def damage_study(path: str, variants: int, seed: int = 0):
    """How strict the check before a byte-for-byte record is: ``variants`` damaged copies
    (a tenth truncated anywhere in the scan, the rest one flipped bit in the entropy-coded
    data) of one photo saved baseline and progressive, each judged by a full-size strict
    decode and by the 1/8-scale greyscale check; counts where they disagree."""
    import io
    import random

    import simplejpeg
    from PIL import Image

    def verdict(data, **kw):
        try:
            simplejpeg.decode_jpeg(data, strict=True, **kw)
            return True
        except ValueError:
            return False

    img = Image.open(path).convert("RGB")
    rng = random.Random(seed)
    out = {}
    for kind, kw in (("baseline", {}), ("progressive", {"progressive": True})):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, **kw)
        data = buf.getvalue()
        sos = data.index(b"\xff\xda")
        rejected = disagree = 0
        for k in range(variants):
            x = bytearray(data)
            if k < variants // 10:
                x = x[: rng.randrange(sos, len(data))]
            else:
                x[rng.randrange(sos + 12, len(data) - 2)] ^= 1 << rng.randrange(8)
            full = verdict(bytes(x), colorspace="RGB")
            check = verdict(bytes(x), colorspace="GRAY", fastdct=True, fastupsample=True,
                            min_height=1, min_width=1)
            rejected += not full
            disagree += full != check
        out[kind] = {"variants": variants, "rejected_by_full_decode": rejected,
                     "disagreements": disagree}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000, help="500x375 photos (0: none)")
    ap.add_argument("--camera", type=int, default=48, help="12-megapixel photos (0: none)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "whole-bench-data"),
                    help="where the input photos are drawn (kept for the next run)")
    ap.add_argument("--damage", type=int, default=1500,
                    help="damaged copies per kind in the strictness study (0: none)")
    ap.add_argument("--damage-only", action="store_true",
                    help="run only the strictness study (no Ray), print it and exit")
    ap.add_argument("--json", default="whole-bench.json")
    args = ap.parse_args(argv)
    if args.damage_only:
        sets = _inputs(args.data, args.photos, 0)
        print(json.dumps(damage_study(_files(sets["500x375"])[0], args.damage), indent=2))
        return 0

    import ray

    from ray_ingest.convert import convert
    from ray_ingest.runtime import ensure_ray

    sets = _inputs(args.data, args.photos, args.camera)
    for folder in sets.values():  # from the page cache in every row
        for f in _files(folder):
            with open(f, "rb") as g:
                g.read()
    work = tempfile.mkdtemp(prefix="whole-bench-")
    ensure_ray()
    first = next(iter(sets.values()))
    for policy in POLICIES.values():  # worker start-up and imports outside the timed rows
        convert(first, os.path.join(work, "warm"), overwrite=True, show_progress=False,
                **policy)

    runs = {(s, p): [] for s in sets for p in POLICIES}
    for r in range(args.rounds):
        order = list(POLICIES) if r % 2 == 0 else list(reversed(POLICIES))
        for set_name, folder in sets.items():
            for policy in order:
                out = os.path.join(work, "out")
                shutil.rmtree(out, ignore_errors=True)
                row = bench_convert(folder, out, POLICIES[policy])
                runs[(set_name, policy)].append(row)
                print(f"  round {r + 1} {set_name:<9} {policy:<20} {row['images']} images in "
                      f"{row['seconds']:.2f} s = {row['images_per_second']:.0f}/s, "
                      f"{row['cpu_us_per_image']:.0f} us CPU/image, "
                      f"{row['bytes_per_image'] / 1e3:.1f} KB/image, "
                      f"{row['stored_as_is']} stored as they are", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    rows, ratios = {}, {}
    base, keep = list(POLICIES)
    for set_name in sets:
        for policy in POLICIES:
            rs = runs[(set_name, policy)]
            rows[f"{set_name} {policy}"] = {
                "images": rs[0]["images"],
                "images_per_second": statistics.median(r["images_per_second"] for r in rs),
                "runs_images_per_second": [r["images_per_second"] for r in rs],
                "cpu_us_per_image": statistics.median(r["cpu_us_per_image"] for r in rs),
                "bytes_per_image": rs[0]["bytes_per_image"],
                "stored_as_is": rs[0]["stored_as_is"]}
        per_round = [k["images_per_second"] / b["images_per_second"]
                     for b, k in zip(runs[(set_name, base)], runs[(set_name, keep)])]
        ratios[f"{set_name}: keep / center-crop speed"] = {
            "median": statistics.median(per_round), "rounds": per_round}
        ratios[f"{set_name}: center-crop / keep CPU per image"] = (
            rows[f"{set_name} {base}"]["cpu_us_per_image"]
            / rows[f"{set_name} {keep}"]["cpu_us_per_image"])
        ratios[f"{set_name}: keep / center-crop bytes"] = (
            rows[f"{set_name} {keep}"]["bytes_per_image"]
            / rows[f"{set_name} {base}"]["bytes_per_image"])
    costs = {s: per_image_costs(_files(folder)[:200]) for s, folder in sets.items()}
    damage = (damage_study(_files(sets["500x375"])[0], args.damage)
              if args.damage and "500x375" in sets else None)

    print()
    print(f"{'row':<32}{'images/s':>10}{'CPU us/img':>12}{'KB/image':>10}{'as is':>8}")
    for name, r in rows.items():
        print(f"{name:<32}{r['images_per_second']:>10.0f}{r['cpu_us_per_image']:>12.0f}"
              f"{r['bytes_per_image'] / 1e3:>10.1f}{r['stored_as_is']:>8}")
    print()
    for name, v in ratios.items():
        print(f"{name}: " + (f"{v['median']:.2f}x (rounds: "
                             + ", ".join(f"{x:.2f}" for x in v["rounds"]) + ")"
                             if isinstance(v, dict) else f"{v:.2f}x"))
    for s, c in costs.items():
        print(f"per image, one process, {s}: " + ", ".join(f"{k} {v:.0f} us"
                                                          for k, v in c.items()))
    if damage:
        print("strictness of the check: " + json.dumps(damage))
    result = {"date": time.strftime("%Y-%m-%d"),
              "command": "python benchmarks/whole_bench.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "ray": ray.__version__},
              "rounds": args.rounds, "rows": rows, "ratios": ratios,
              "per_image_microseconds": costs, "damage_study": damage}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
