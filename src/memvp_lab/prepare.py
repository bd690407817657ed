"""Fetch a task's official files, verify and unpack them into the task's layout, extract features:

    python -m memvp_lab.prepare scienceqa --root /data/scienceqa            # make data TASK=scienceqa
    python -m memvp_lab.prepare scienceqa --root /data/scienceqa --dry-run  # what, from where, how much disk
    python -m memvp_lab.prepare scienceqa --features clip_vit_l14           # the features to extract (none: skip)
    python -m memvp_lab.prepare scienceqa --mirror file:///srv/mirror        # <mirror>/<host>/<path> instead of the URLs

The files and their URLs are the task config's ``sources`` (each with its size and checksum where
the source publishes one). Everything resumes: an interrupted download continues from its
``.part`` file, a verified file is not fetched again, an unpacked archive is not unpacked again,
and feature extraction skips the images already in the file. A file that fails its check is an
error naming it (and is fetched afresh next time); a file behind a form or a login is named with
where to get it and where to put it, then checked. Extra arguments are config overrides, e.g.
``task.sources.0.sha256=<hex>``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from memvp_lab.config.compose import compose_config
from memvp_lab.data.downloads import Source, fetch, is_verified, mirrored, unpack
from memvp_lab.data.extraction import extract_features
from memvp_lab.data.images import find_images
from memvp_lab.errors import USER_ERRORS, ConfigError, DataError

log = logging.getLogger(__name__)


def sources_of(cfg) -> list[Source]:
    declared = cfg.task.get("sources")
    if not declared:
        raise ConfigError(
            f"task={cfg.task.name} declares no sources to fetch yet; place its files under task.root as the "
            "README's task table describes"
        )
    return [Source(**OmegaConf.to_container(s)) for s in declared]


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def plan(sources: list[Source], root: Path, mirror: str | None) -> str:
    """What a run would do, source by source, and the disk it needs."""
    lines, needed, unknown = [], 0, 0
    for s in sources:
        path = root / s.to
        part = path.with_name(path.name + ".part")
        if is_verified(path):
            state = "verified, kept"
        elif s.manual:
            state = f"by hand: {s.manual}"
        elif part.exists():
            state = f"to resume after {_size(part.stat().st_size)}"
        else:
            state = "to fetch"
        if not is_verified(path) and not s.manual:
            if s.size is None:
                unknown += 1
            else:
                needed += s.size * (2 if s.unpack else 1)  # an archive and what it unpacks to
        size = _size(s.size) if s.size is not None else "size not published"
        lines.append(f"{path}  <-  {mirrored(s.url, mirror) or '(by hand)'}  [{size}; {state}]")
    disk = f"disk needed: {_size(needed)}" if needed else "disk needed: nothing known"
    if unknown:
        disk += f", plus {unknown} file(s) whose size the source does not publish (and what they unpack to)"
    return "\n".join([*lines, disk])


def extract(cfg, root: Path, vision: str) -> Path | None:
    """Features of the task's images with ``vision``'s frozen encoder, into ``task.data.features``."""
    spec = cfg.task.get("prepare")
    if not spec or not spec.get("images"):
        raise ConfigError(f"task={cfg.task.name} names no images to extract features from (task.prepare.images)")
    vcfg = compose_config([f"task={cfg.task.name}", f"vision={vision}", "vision.adapters=null"])
    images = find_images(root, spec.images, spec.get("image_id", "stem"))
    if not images:
        raise DataError(f"no images match {spec.images} under {root}")
    out = root / vcfg.task.data.features
    return extract_features(lambda: instantiate(vcfg.vision.encoder), images, out)


def prepare(task: str, root: str | None, mirror: str | None, features: str | None, overrides: list[str]) -> Path:
    """Fetches, verifies and unpacks every source of ``task`` into its root, then extracts features."""
    cfg = compose_config([f"task={task}", *([f"task.root={root}"] if root else []), *overrides])
    root_path = Path(cfg.task.root)
    sources = sources_of(cfg)
    missing = []
    for source in sources:
        try:
            path = fetch(source, root_path, mirror)
        except DataError as err:
            if not source.manual:
                raise
            missing.append(str(err))
            continue
        if source.unpack:
            unpack(path, root_path / source.unpack)
    if missing:
        raise DataError("files to place by hand, then run this again:\n  " + "\n  ".join(missing))
    vision = features or str(cfg.vision.name)
    if vision != "none":
        log.info("features: %s", extract(cfg, root_path, vision))
    return root_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memvp_lab.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("task", help="a config of conf/task (scienceqa, ...)")
    parser.add_argument("--root", default=None, help="where the task's files go (default: the task's task.root)")
    parser.add_argument("--mirror", default=None, help="read every URL from <mirror>/<host>/<path> (e.g. file:///srv)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched, from where, the disk")
    parser.add_argument(
        "--features", default=None, help="vision config to extract features with (default: the task's; none: skip)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. task.sources.0.sha256=<hex>")
    args = parser.parse_intermixed_args(argv)  # options and overrides in any order
    logging.basicConfig(level=logging.INFO, format="[%(name)s][%(levelname)s] - %(message)s")
    try:
        if args.dry_run:
            cfg = compose_config(
                [f"task={args.task}", *([f"task.root={args.root}"] if args.root else []), *args.overrides]
            )
            print(plan(sources_of(cfg), Path(cfg.task.root), args.mirror))
            return 0
        print(prepare(args.task, args.root, args.mirror, args.features, args.overrides))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
