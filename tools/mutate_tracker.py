"""A small mutation check of the tracker: apply one deliberate change at a time to ``tracker/``, run
the tracker tests, and report which change no test notices (a *surviving* mutant).

Each mutant replaces one exact piece of source text (it must occur exactly once; a mutant whose
text is gone fails loudly rather than passing silently). The file is restored after every run,
also on Ctrl-C. Run from the checkout, with the project's Python::

    python tools/mutate_tracker.py                 # every mutant
    python tools/mutate_tracker.py --only gate     # the mutants whose name contains "gate"
                                                   # (repeatable)
    python tools/mutate_tracker.py --list

Exit status 0 when every mutant is killed, 1 when some survive.
"""

from __future__ import annotations

import argparse
import glob
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str   # relative to the checkout
    old: str
    new: str


MUTANTS = (
    # The four behaviours a review found untested.
    Mutant("confidence weighting off (online)", "tracker/poseflow.py",
           "value = sim * self.similarity.confidence_weight(conf / 2.0)", "value = sim"),
    Mutant("confidence weighting off (look-ahead)", "tracker/poseflow.py",
           "weight = self.config.lookahead_decay ** offset * self.similarity.confidence_weight(conf)",
           "weight = self.config.lookahead_decay ** offset"),
    Mutant("look-ahead hysteresis removed", "tracker/poseflow.py",
           "value = value + self.config.lookahead_margin * made", "value = value"),
    Mutant("gap-growing tolerance removed", "tracker/matching.py",
           "scale * np.sqrt(gap), self.sigma)", "scale, self.sigma)"),
    Mutant("running colour histogram replaced by the last one", "tracker/poseflow.py",
           "else 0.7 * f.app + 0.3 * slot.app[j]", "else slot.app[j].copy()"),
    # The matching cost's terms and weights.
    Mutant("pose term dropped", "tracker/matching.py",
           "num = self.w_pose * psim + self.w_box", "num = 0 * psim + self.w_box"),
    Mutant("box term dropped", "tracker/matching.py",
           "+ self.w_box * box_iou_paired(pbox, poses.boxes[None])", "+ 0.0"),
    Mutant("appearance agreement ignored", "tracker/matching.py",
           "num = num + self.w_app * bhattacharyya(flows.histograms, poses.histograms) * both",
           "num = num + self.w_app * both"),
    Mutant("correspondence term dropped", "tracker/matching.py",
           "num = num + self.w_orb * correspondences.k_sim * correspondences.known",
           "num = num"),
    Mutant("gap decay removed", "tracker/matching.py",
           "return num / den * self.gap_decay ** (gap - 1)", "return num / den"),
    Mutant("motion removed", "tracker/matching.py",
           "if not self.use_motion:", "if True:"),
    Mutant("confidence clip removed", "tracker/matching.py",
           "np.clip(confidence / 3.0, 0.0, 1.0)", "confidence / 3.0"),
    # PF-Builder.
    Mutant("gate removed", "tracker/poseflow.py",
           "ok = sim >= self.config.gate", "ok = sim >= 0.0"),
    Mutant("velocity not smoothed", "tracker/poseflow.py",
           "else 0.5 * f.velocity + 0.5 * step", "else step"),
    Mutant("stop criterion off", "tracker/poseflow.py",
           "elif self.config.stop_score > 0:", "elif False:"),
    Mutant("link_len off by one", "tracker/poseflow.py",
           "if t - f.last_t > self.config.link_len:", "if t - f.last_t >= self.config.link_len:"),
    Mutant("look-ahead step off", "tracker/poseflow.py",
           "            while self._next_boundary <= t - self.lookahead:",
           "            while False:"),
    Mutant("look-ahead decay removed", "tracker/poseflow.py",
           "weight = self.config.lookahead_decay ** offset * self.similarity",
           "weight = 1.0 ** offset * self.similarity"),
    Mutant("look-ahead stop criterion removed", "tracker/poseflow.py",
           "ok = (gated & (score / (horizon + 1) >= self.config.stop_score)[None, :]) | made",
           "ok = gated | made"),
    # PF-NMS, gap filling.
    Mutant("merge overlap rule removed", "tracker/poseflow.py",
           "if len(v) >= self.config.merge_min_overlap)", "if len(v) >= 1)"),
    Mutant("merge keeps the later flow's id", "tracker/poseflow.py",
           "keep, gone = (a, b) if (a.first_t, -a.mean_conf) <= (b.first_t, -b.mean_conf) else (b, a)",
           "keep, gone = (b, a) if (a.first_t, -a.mean_conf) <= (b.first_t, -b.mean_conf) else (a, b)"),
    Mutant("re-link similarity threshold removed", "tracker/poseflow.py",
           "ok = (gap > 0) & (gap <= self.config.relink_gap) & (sim >= self.config.relink_threshold)",
           "ok = (gap > 0) & (gap <= self.config.relink_gap)"),
    Mutant("short-flow rule off by one", "tracker/poseflow.py",
           "if f.count >= self.config.min_flow_len:", "if f.count > self.config.min_flow_len:"),
    Mutant("fill score decay removed", "tracker/poseflow.py",
           "bs = float(interpolate_box(slot.t, a.bs, a.t, sl.bs[j], sl.t)) * self.config.fill_decay ** near",
           "bs = float(interpolate_box(slot.t, a.bs, a.t, sl.bs[j], sl.t))"),
    Mutant("fill duplicates not checked", "tracker/poseflow.py",
           "if len(kept) and self._covered(kp, box, slot, kept):", "if False:"),
)


#: Run first: the fast tests aimed at the matching cost and the tuned behaviours (with ``-x`` a
#: killed mutant stops there).
FIRST = ("test_tracker_matching.py", "test_tracker_tuned.py")


def run_tests(pytest_args: list[str]) -> tuple[bool, str]:
    """Run the tracker tests; ``(passed, the first failing test or "")``."""
    files = sorted(glob.glob(str(ROOT / "tests" / "test_tracker*.py")),
                   key=lambda f: (Path(f).name not in FIRST, f))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        "-p", "no:randomly", *pytest_args, *files], cwd=ROOT, capture_output=True,
                       text=True)
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in r.stdout.splitlines()
              if line.startswith("FAILED ") or line.startswith("ERROR ")]
    return r.returncode == 0, (failed[0].replace(str(ROOT) + "/", "") if failed else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run the mutants whose name contains this (repeatable)")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    args, pytest_args = p.parse_known_args(argv)
    # A plain ``kill`` must restore the mutated file too: SystemExit runs the ``finally`` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        print("\n".join(f"{m.name}  ({m.file})" for m in mutants))
        return 0
    ok, _ = run_tests(pytest_args)
    if not ok:
        print("the tracker tests fail without any mutant; fix them first", file=sys.stderr)
        return 2
    survivors = []
    for m in mutants:
        path = ROOT / m.file
        original = path.read_text()
        if original.count(m.old) != 1:
            print(f"{m.name}: its text occurs {original.count(m.old)} times in {m.file}",
                  file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        try:
            path.write_text(original.replace(m.old, m.new))
            passed, first = run_tests(pytest_args)
        finally:
            path.write_text(original)
        verdict = "SURVIVED" if passed else f"killed by {first}"
        print(f"| {m.name} | {verdict} | {time.perf_counter() - t0:.0f} s |", flush=True)
        if passed:
            survivors.append(m.name)
    print(f"{len(mutants) - len(survivors)} of {len(mutants)} mutants killed"
          + (f"; surviving: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
