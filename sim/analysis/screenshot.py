"""The HTML report as a reader sees it: rendered to PNG in headless Chromium (`make screenshot`).

    python -m sim.analysis.screenshot results/report.html --out results/report.png [--anchor ID ...]

The whole page is captured in one tall window and the blank space below the page is cropped; each
`--anchor` (an element id, e.g. a figure's) is also captured on its own as <out>_<anchor>.png: a copy of
the page with that element pinned to the top of the window (headless Chromium does not scroll to a
URL's #fragment before its screenshot).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def capture(url: str, out: Path, browser: str, width: int = 1280, height: int = 1600, timeout: float = 120) -> Path:
    """One headless-Chromium screenshot of `url` in a width x height window, written to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state shared with a running browser
        cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={out.resolve()}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{browser} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return out


def crop_blank_bottom(path: Path, margin: int = 40) -> tuple[int, int]:
    """Cut the blank rows below the page's content (the window is taller than the page); returns the size."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    bg = rgb.getpixel((rgb.width - 1, rgb.height - 1))
    diff = Image.new("RGB", rgb.size, bg)
    from PIL import ImageChops

    box = ImageChops.difference(rgb, diff).getbbox()
    bottom = min(rgb.height, (box[3] if box else rgb.height) + margin)
    rgb.crop((0, 0, rgb.width, bottom)).save(path)
    return rgb.width, bottom


def render(report: Path, out: Path, browser: str, anchors: tuple[str, ...] = (), width: int = 1280,
           height: int = 16000) -> list[Path]:
    """The whole report (cropped to its content) and each anchor's view, as PNG files."""
    paths = [capture(report.resolve().as_uri(), out, browser, width, height)]
    crop_blank_bottom(out)
    text = report.read_text(encoding="utf-8")
    for a in anchors:
        if f'id="{a}"' not in text and f"id='{a}'" not in text:
            raise ValueError(f"{report} has no element with id {a!r}")
        pin = (f"<style>#{a} {{ position: fixed; top: 0; left: 0; right: 0; margin: 0; padding: 1em; "
               "background: #fff; z-index: 9999; }</style></head>")
        with tempfile.TemporaryDirectory() as d:
            page = Path(d) / report.name
            page.write_text(text.replace("</head>", pin, 1), encoding="utf-8")
            shot = capture(page.as_uri(), out.with_name(f"{out.stem}_{a}.png"), browser, width, 1400)
        crop_blank_bottom(shot)
        paths.append(shot)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: render a report to PNG."""
    ap = argparse.ArgumentParser(prog="python -m sim.analysis.screenshot", description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="the HTML report to render")
    ap.add_argument("--out", type=Path, help="PNG to write (default: the report's name with .png)")
    ap.add_argument("--browser", help=f"Chromium-like browser (default: the first of {', '.join(BROWSERS)} on PATH)")
    ap.add_argument("--anchor", action="append", default=[], help="also capture this element id on its own "
                    "(repeatable; default: none)")
    ap.add_argument("--width", type=int, default=1280, help="window width in pixels (default 1280)")
    ap.add_argument("--height", type=int, default=16000, help="window height for the whole page (default 16000; "
                    "a longer page is cut there)")
    args = ap.parse_args(argv)
    browser = args.browser or find_browser()
    if browser is None:
        print("error: no Chromium found; install it (Debian: apt-get install chromium) or pass --browser",
              file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"error: {args.report}: no such report; run make run (or make report) first", file=sys.stderr)
        return 2
    for p in render(args.report, args.out or args.report.with_suffix(".png"), browser, tuple(args.anchor),
                    args.width, args.height):
        print(f"screenshot: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
