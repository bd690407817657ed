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
import json
import logging
import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from memvp_lab.config.compose import compose_config
from memvp_lab.data.downloads import Source, fetch, is_verified, mirrored, remote_size, unpack
from memvp_lab.data.extraction import extract_features
from memvp_lab.data.images import find_images, find_videos
from memvp_lab.errors import USER_ERRORS, ConfigError, DataError

log = logging.getLogger(__name__)


def sources_of(cfg) -> list[Source]:
    declared = cfg.task.get("sources")
    if not declared:
        raise ConfigError(
            f"task={cfg.task.name} declares no sources to fetch (task.sources); its files go under task.root as "
            "the README's task table describes"
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
        size_of = s.size
        if size_of is None and not s.manual and not is_verified(path):
            size_of = remote_size(mirrored(s.url, mirror))  # what the server says it will send
        if not is_verified(path) and not s.manual:
            if size_of is None:
                unknown += 1
            else:
                needed += size_of * (2 if s.unpack else 1)  # an archive and what it unpacks to
        if s.size is not None:
            size = _size(s.size)
        elif size_of is not None:
            size = f"{_size(size_of)} by the server"
        else:
            size = "size not published"
        lines.append(f"{path}  <-  {mirrored(s.url, mirror) or '(by hand)'}  [{size}; {state}]")
    disk = f"disk needed: {_size(needed)}" if needed else "disk needed: nothing known"
    if unknown:
        disk += f", plus {unknown} file(s) whose size the source does not publish (and what they unpack to)"
    return "\n".join([*lines, disk])


def used_ids(root: Path, files: list[str], key: str) -> set[str]:
    """The ``key`` values (image or video ids) of the entries of question files: a JSON list or
    JSON lines."""
    ids: set[str] = set()
    for name in files:
        path = root / name
        if not path.is_file():
            raise DataError(f"{path} does not exist; it lists the images to extract features of")
        text = path.read_text()
        entries = (
            json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines() if line]
        )
        ids.update(str(e[key]) for e in entries)
    return ids


def feature_jobs(cfg, vision: str, overrides: list[str]) -> list[dict]:
    """The feature files to write: ``task.prepare.features`` entries, each ``{images: glob of image
    files | videos: glob of frame folders (under task.root), image_id: stem | parent, to: path
    under task.root (default task.data.features), ids_in: question files whose ``id_key`` values
    pick the images, manual: how to get the images when they are missing}``. With another
    vision than the task's, a path that does not name it becomes its sibling named by it."""
    spec = cfg.task.get("prepare") or {}
    entries = OmegaConf.to_container(spec.get("features") or [], resolve=True)
    if not entries:
        raise ConfigError(f"task={cfg.task.name} names no images to extract features from (task.prepare.features)")
    vcfg = compose_config([f"task={cfg.task.name}", *overrides, f"vision={vision}", "vision.adapters=null"])
    jobs = []
    for entry in entries:
        to = entry.get("to") or vcfg.task.data.features
        if not isinstance(to, str):
            raise ConfigError(
                f"task={cfg.task.name}: task.prepare.features entries need 'to' (task.data.features is a list)"
            )
        if vision != cfg.vision.name and vision not in to:  # the path names the task's own features
            to = str(Path(to).with_name(vision + Path(to).suffix))
        jobs.append({**entry, "to": to, "vision": vcfg.vision})
    return jobs


def extract(cfg, root: Path, vision: str, overrides: list[str]) -> list[Path]:
    """Features of the task's images (or videos) with ``vision``'s frozen encoder."""
    jobs = feature_jobs(cfg, vision, overrides)
    written = []
    for job in jobs:
        if job.get("videos"):
            items, frames = find_videos(root, job["videos"]), int(job["vision"].num_tokens)
        else:
            items, frames = find_images(root, job["images"], job.get("image_id", "stem")), None
        if job.get("ids_in"):
            wanted = used_ids(root, job["ids_in"], job.get("id_key", "img_id"))
            missing = sorted(wanted - set(items))
            if missing:
                hint = f"; {job['manual']}" if job.get("manual") else ""
                raise DataError(
                    f"{len(missing)} {'videos' if frames else 'images'} used by {', '.join(job['ids_in'])} are not "
                    f"under {root / (job.get('videos') or job['images'])}, e.g. {missing[0]!r}{hint}"
                )
            items = {k: v for k, v in items.items() if k in wanted}
        if not items:
            hint = f"; {job['manual']}" if job.get("manual") else ""
            what = "frame folders" if frames else "images"
            raise DataError(f"no {what} match {job.get('videos') or job['images']} under {root}{hint}")
        encoder = job["vision"].encoder
        written.append(extract_features(lambda e=encoder: instantiate(e), items, root / job["to"], frames=frames))
    if vision != cfg.vision.name:
        paths = [str(Path(w).relative_to(root)) for w in written]
        log.info(
            "train on them with: vision=%s task.data.features=%s",
            vision,
            paths[0] if len(paths) == 1 else "[" + ",".join(paths) + "]",
        )
    return written


def convert(cfg, root: Path) -> None:
    """Runs ``task.prepare.convert``: callables that turn the official files into the layout the
    task reads (each is given ``root`` and skips what is already written)."""
    spec = cfg.task.get("prepare") or {}
    for step in spec.get("convert") or []:
        instantiate(step, root=root)


def prepare(task: str, root: str | None, mirror: str | None, features: str | None, overrides: list[str]) -> Path:
    """Fetches, verifies and unpacks every source of ``task`` into its root, converts the files
    to the task's layout, then extracts features."""
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
    convert(cfg, root_path)
    vision = features or str(cfg.vision.name)
    if vision != "none":
        for path in extract(cfg, root_path, vision, overrides):
            log.info("features: %s", path)
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
