"""More training photographs for the tiny recipes' `data.photos`, from Debian's wallpaper packages.

    apt-get install -y mate-backgrounds lomiri-wallpapers-16.04
    python -m recipes.tiny.photos outputs/tiny-cpu/photos [--long-side 1024]

Copies the photographs among them (the paintings, renders and logos are left out; all were looked at) into
the folder, each shrunk to `--long-side` pixels on its long side: the held-out photographs are 450-1400 px,
so a 128-px crop of a 4-6K wallpaper would be far smoother than anything the benchmark shows. Licences:
mate-backgrounds GPL-2+, lomiri-wallpapers-16.04 CC-BY-SA-3.0 / CC-BY-4.0 (see their copyright files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

MATE = Path("/usr/share/backgrounds/mate/nature")
LOMIRI = Path("/usr/share/backgrounds")
LOMIRI_PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg", "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)


def sources() -> list[Path]:
    found = sorted(MATE.glob("*.jpg")) + [LOMIRI / n for n in LOMIRI_PHOTOS if (LOMIRI / n).is_file()]
    if not found:
        sys.exit("no wallpapers found: apt-get install -y mate-backgrounds lomiri-wallpapers-16.04")
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m recipes.tiny.photos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--long-side", type=int, default=1024)
    a = p.parse_args(argv)
    found = sources()
    a.folder.mkdir(parents=True, exist_ok=True)
    for src in found:
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((a.long_side, a.long_side), Image.LANCZOS)
            im.save(a.folder / f"{src.stem}.png")
    print(f"{len(found)} photographs in {a.folder}")


if __name__ == "__main__":
    main()
