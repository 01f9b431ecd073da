"""The packed environment for jobs without containers: pack (pixi-pack)."""

from __future__ import annotations

import os
from pathlib import Path

from invoke import Exit, task

from .helpers import MANIFEST, ROOT, human_size, lock_digest, run, tool
from .settings import Settings, settings
from .submit_file import SubmitFile

# Without an installed copy to measure, the unpacked environment is taken as this many
# times the pack (conda packages are compressed about 2-3x).
UNPACKED_PER_PACKED = 3


def pack_path(s: Settings, environment: str = "", archive: bool = False) -> Path:
    """Named by what it was built from: a pack is reused only for the same pixi.lock."""
    suffix = "tar" if archive else "sh"
    return ROOT / f"{s.name}-environment-{environment or s.environment}-{s.subdir}-{lock_digest()[:12]}.{suffix}"


@task(
    help={
        "environment": "environment to pack (default: the container environment)",
        "archive": "a tarball, not an executable",
    }
)
def pack(c, environment: str = "", archive: bool = False) -> Path:
    """Pack the environment with pixi-pack (self-extracting by default), once per pixi.lock."""
    s = settings(c)
    final = pack_path(s, environment, archive)
    if final.is_file():
        print(f"{final.name} was packed from this pixi.lock: reusing it")
        return final
    pixi_pack = tool("pixi-pack", "run tasks in the pixi `tasks` environment, which has pixi-pack")
    # pixi-pack replaces the extension of --output-file with .sh for an executable (src/pack.rs,
    # open_output_file(target, Some("sh"))): a partial name that already ends in it is kept.
    partial = final.with_name(f"{final.stem}.part{final.suffix}")
    argv = [pixi_pack, "--environment", environment or s.environment, "--platform", s.subdir]
    argv += [] if archive else ["--create-executable"]
    try:
        run([*argv, "--output-file", str(partial), str(MANIFEST)], "pixi-pack")
        if not partial.is_file():
            raise Exit(f"pixi-pack reported success but wrote no {partial.name}.")
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    print(f"packed {final.name} ({human_size(final.stat().st_size)})")
    return final


def unpacked_size(environment: str, packed: Path) -> tuple[int, str]:
    """The unpacked environment's size: measured where pixi installed it here, else estimated."""
    installed = ROOT / ".pixi" / "envs" / environment
    if installed.is_dir():
        total = sum(p.stat().st_size for p in installed.rglob("*") if p.is_file() and not p.is_symlink())
        return total, f"measured in {installed.relative_to(ROOT)}"
    return UNPACKED_PER_PACKED * packed.stat().st_size, f"estimated as {UNPACKED_PER_PACKED}x the pack"


def check_pack_disk(s: Settings, packed: Path, submit: SubmitFile, environment: str = "") -> None:
    """Refuse a request_disk below the self-extractor's peak: ~3x the pack plus the environment."""
    unpacked, how = unpacked_size(environment or s.environment, packed)
    need = 3 * packed.stat().st_size + unpacked
    if submit.disk_bytes() < need:
        raise Exit(
            f"request_disk = {submit.last('request_disk')} in {submit.name} is too small for the pack: unpacking "
            f"needs about {human_size(need)} (3x the {human_size(packed.stat().st_size)} pack plus the "
            f"environment, {how}); raise request_disk there."
        )
