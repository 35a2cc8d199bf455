"""Summarise a py-spy `--format raw` profile (collapsed stacks), such as `api_create.py --profile` writes.

Prints the functions that take the largest share of samples, inclusive (the function and what it calls)
and self, with line numbers dropped so one function is one row. `--focus` keeps only the stacks that pass
through a frame containing that text (e.g. `_create_once`).

    .venv/bin/python bench/profile_summary.py /tmp/prof/hub-postgresql.txt --top 40
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def summarise(path: Path, focus: str | None) -> tuple[int, Counter[str], Counter[str]]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        if focus and not any(focus in frame for frame in frames):
            continue
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    return total, inclusive, own


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--focus", help="only stacks through a frame containing this text")
    args = parser.parse_args()
    total, inclusive, own = summarise(args.profile, args.focus)
    if not total:
        raise SystemExit("no samples")
    print(f"{total} samples" + (f" through {args.focus!r}" if args.focus else ""))
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"--- {title}")
        for frame, samples in counter.most_common(args.top):
            print(f"{100 * samples / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
