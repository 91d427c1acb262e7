"""Install the carried wheels (.whl/) this Python lacks, offline, into a target folder.

A lent GPU machine has no network and its own torch, so nothing may touch its
site-packages: wheels go into `--target` (put first on PYTHONPATH by
scripts/gpu-check.sh), and only those whose distribution is missing here or older
than the wheel (pydantic's typing_extensions floor is above what torch images carry).
Before installing, every wheel's requirements must be met by another wheel or by
what this Python has, so a missing wheel is named here rather than found at import.

`--rehearsal` installs every wheel (the CPU rehearsal has them all already) for
CPython 3.12 manylinux, as the GPU machine would; where this Python is not 3.12
the folder cannot be imported here, and says so by not writing `USABLE`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

GPU_PYTHON = (3, 12)
#: Written into the target when this Python can import what was installed there.
USABLE = "USABLE"


def wheel_requirements(path: Path) -> list[Requirement]:
    """Requires-Dist of a wheel that apply with no extras on this Python."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(name).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    env = {"extra": "", "python_version": "%d.%d" % GPU_PYTHON}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def installed_version(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def choose(wheels: list[Path], everything: bool) -> tuple[list[Path], list[str]]:
    """The wheels to install, and one line per wheel saying why or why not."""
    chosen, lines = [], []
    for path in wheels:
        name, version, _, _ = parse_wheel_filename(path.name)
        have = installed_version(name)
        if everything or have is None or have < version:
            chosen.append(path)
            why = "rehearsal: all" if everything else ("missing" if have is None else f"has older {have}")
            lines.append(f"install {name} {version} ({why})")
        else:
            lines.append(f"keep    {name} {have} (wheel {version} not newer)")
    return chosen, lines


def unmet(chosen: list[Path]) -> list[str]:
    """Requirements of the chosen wheels met neither by another chosen wheel nor here."""
    versions = {}
    for path in chosen:
        name, version, _, _ = parse_wheel_filename(path.name)
        versions[canonicalize_name(name)] = version
    problems = []
    for path in chosen:
        for req in wheel_requirements(path):
            have = versions.get(canonicalize_name(req.name)) or installed_version(req.name)
            if have is None or not req.specifier.contains(have, prereleases=True):
                problems.append(f"{path.name} needs {req}, found {have or 'nothing'}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder of .whl files")
    parser.add_argument("target", type=Path, help="folder to install into (put it on PYTHONPATH)")
    parser.add_argument("--rehearsal", action="store_true")
    args = parser.parse_args()
    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        print(f"no wheels in {args.wheels}/ (scripts/gpu-wheels.sh fetches them): using this Python's packages")
        return 0
    chosen, lines = choose(wheels, args.rehearsal)
    print("\n".join(lines))
    if problems := unmet(chosen):
        print("error: the wheels do not make a complete set:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    args.target.mkdir(parents=True, exist_ok=True)
    here = sys.version_info[:2] == GPU_PYTHON
    if chosen:
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(args.target)]
        if not here:   # the cp312 wheels, installed as the GPU machine's Python would
            cmd += ["--python-version", "%d.%d" % GPU_PYTHON, "--implementation", "cp", "--only-binary=:all:",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"]
        subprocess.run(cmd + [str(p) for p in chosen], check=True)
    if here:
        (args.target / USABLE).write_text("")
        print(f"installed {len(chosen)} wheel(s) into {args.target}")
    else:
        print(f"installed {len(chosen)} wheel(s) into {args.target} for CPython 3.12; this Python is "
              f"{sys.version_info[0]}.{sys.version_info[1]}, so it keeps its own packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
