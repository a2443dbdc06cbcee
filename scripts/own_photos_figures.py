"""The figures of the README's "Train on your own photos", reproduced: GENKI-4K's development half through train.py.

  python scripts/own_photos_figures.py [--genki DIR] [--out DIR] [--withheld DIR] [RUN ...]

Every run is the command a user types (``python train.py --data ... --classes smile non_smile [--init]``),
each with an empty crops cache so that its time includes finding the faces. RUN is any of:

  full_init, full_scratch      all 2,000 photos, fine-tuned from the shipped model / from random weights
  few_init, few_scratch        300 of them (150 a class, a seeded pick), likewise; each model is then also
                               judged on the 1,700 development photos that were not picked

The fine-tuned 2,000-photo model is also judged on other people's happy and sad faces: FER2013 val's
happy crops (as smile) and sad crops (as non_smile), and the smiling portraits in ../shared/media. With
--withheld DIR (GENKI-4K's even-numbered half, DIR/smile and DIR/non_smile) it is judged there too.
Prints two tables; every number in them comes from a run's report.json or state.json, from
``train.py evaluate --json``, or from the clock and the CPU time of the run's process (which, unlike the
wall time, does not grow when other work shares the cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLASSES = ["smile", "non_smile"]
RUNS = ["full_init", "full_scratch", "few_init", "few_scratch"]
FEW_PER_CLASS = 150
PICK_SEED = 0


def _link_tree(destination: Path, files: dict[str, list[Path]]) -> Path:
    """DIR/<class>/ of symlinks, so the photos are read in place and never copied."""
    shutil.rmtree(destination, ignore_errors=True)
    for name, paths in files.items():
        (destination / name).mkdir(parents=True)
        for path in paths:
            (destination / name / path.name).symlink_to(path.resolve())
    return destination


def _few_and_rest(genki: Path, out: Path) -> tuple[Path, Path]:
    """The seeded pick of 150 photos a class, and the development photos left over to judge it on."""
    rng = np.random.default_rng(PICK_SEED)
    few, rest = {}, {}
    for name in CLASSES:
        photos = sorted((genki / name).iterdir())
        picked = set(rng.choice(len(photos), FEW_PER_CLASS, replace=False).tolist())
        few[name] = [p for i, p in enumerate(photos) if i in picked]
        rest[name] = [p for i, p in enumerate(photos) if i not in picked]
    return _link_tree(out / "data_few", few), _link_tree(out / "data_rest", rest)


def _train(name: str, data: Path, init: bool, out: Path) -> dict:
    """One train.py run as a user types it, with an empty crops cache: its report.json, the epochs it ran (and its
    best) from its state.json, the wall time and the CPU time."""
    run_dir, cache = out / name, out / f"cache_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "train.py", "--data", str(data), "--classes", *CLASSES, *(["--init"] if init else []),
               "--face-cache", str(cache), "--run-dir", str(run_dir)]
    print("$ " + " ".join(command[1:]), flush=True)
    started, cpu_before = time.monotonic(), _children_cpu_seconds()
    with open(out / f"{name}.log", "w") as log:
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed (status {result.returncode}); see {out / f'{name}.log'}")
    report = json.loads((run_dir / "report.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    report["epochs"], report["best_epoch"] = state["epochs_done"], state["best_epoch"]
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    report["cpu_seconds"] = round(_children_cpu_seconds() - cpu_before, 1)
    return report


def _children_cpu_seconds() -> float:
    """CPU time of finished child processes: unlike the wall time, it does not grow when others share the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _evaluate(model: Path, data: Path, detect: bool) -> dict:
    command = [sys.executable, "train.py", "evaluate", "--data", str(data), "--model", str(model), "--json",
               *(["--detect"] if detect else [])]
    print("$ " + " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"evaluate failed: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _other_people(out: Path) -> dict[str, tuple[Path, bool]]:
    """Happy and sad faces of people not in GENKI-4K, in folders named after the model's classes."""
    fer_val = SHARED / "data" / "fer2013" / "val"
    fer = _link_tree(out / "data_fer_val", {"smile": sorted((fer_val / "happy").iterdir()),
                                             "non_smile": sorted((fer_val / "sad").iterdir())})
    portraits = _link_tree(out / "data_portraits", {"smile": [SHARED / "media" / "obama.jpg",
                                                              SHARED / "media" / "biden.jpg"]})
    return {"FER2013 val crops, happy as smile, sad as non_smile": (fer, False),
            "obama.jpg and biden.jpg (smiling portraits), through the detector": (portraits, True)}


def _row(label: str, metrics: dict) -> str:
    auc = metrics.get("roc_auc")
    return (f"| {label} | {metrics['n']} | {metrics['accuracy']:.4f} | {metrics['balanced_accuracy']:.4f} | "
            f"{'' if auc is None else f'{auc:.4f}'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN", help=f"any of {', '.join(RUNS)} (default: all)")
    parser.add_argument("--genki", type=Path, default=SHARED / "data" / "genki4k_dev")
    parser.add_argument("--withheld", type=Path, help="GENKI-4K's withheld half, DIR/smile and DIR/non_smile")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "own_photos_figures")
    args = parser.parse_args()
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    few, rest = _few_and_rest(args.genki, args.out)
    reports, judged = {}, []
    for name in args.runs or RUNS:
        data = args.genki if name.startswith("full") else few
        reports[name] = _train(name, data, name.endswith("init"), args.out)
        model = Path(reports[name]["model"])
        if name.startswith("few"):
            judged.append((f"{name} on the development photos not picked, through the detector",
                           _evaluate(model, rest, detect=True)))
        if name == "full_init":
            others = _other_people(args.out)
            if args.withheld:
                others["GENKI-4K withheld half"] = (args.withheld, True)
            judged += [(f"full_init on {label}", _evaluate(model, folder, detect))
                       for label, (folder, detect) in others.items()]
    print("\n| run | photos | faces used | skipped (no face / ambiguous / unreadable) | held-out faces | "
          "held-out accuracy | balanced | ROC AUC | epochs (best) | whole run (wall) | CPU time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, report in reports.items():
        held, skipped = report["held_out"], report["skipped"]
        print(f"| {name} | {sum(report['images_found'].values())} | {sum(report['faces_used'].values())} | "
              f"{skipped['no face']} / {skipped['ambiguous']} / {skipped['unreadable']} | {held['n']} | "
              f"{held['accuracy']:.4f} | {held['balanced_accuracy']:.4f} | {held['roc_auc']:.4f} | "
              f"{report['epochs']} ({report['best_epoch']}) | {report['wall_seconds'] / 60:.1f} min | {report['cpu_seconds'] / 60:.1f} min |")
    if judged:
        print("\n| model, judged on | images | accuracy | balanced | ROC AUC |\n|---|---|---|---|---|")
        print("\n".join(_row(label, metrics) for label, metrics in judged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
