"""``ml4ms map -o FILE.html`` (an interactive page) and ``--chemiscope`` (a chemiscope input file).

The page is checked in a real browser when Debian's ``chromium`` is installed
(``.ci/run`` installs it where it can): the script draws every point, hovering a
point shows its id and properties, clicking selects it, and a screenshot is not
blank.
"""

import gzip
import json
import os
import re
import subprocess
import sys
from csv import DictReader

import ase.io
import numpy as np
import pytest

from ml4ms.cli import main
from ml4ms.datasets import load
from ml4ms.maps import hover_columns, map_page, script_json

COLUMNS = "columns=['IP_A_eV','IP_B_eV','r_s_A_ang','r_p_B_ang']"
CHROMIUM = "/usr/bin/chromium"
EVIL = "</script><script>document.title='owned'</script><!--"


def _page_data(page):
    match = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A table whose ids and property names try to break out of the page, with missing colour values."""
    rng = np.random.default_rng(0)
    lines = [f"id,a,b,y,{EVIL}"]
    for k in range(40):
        y = "" if k % 10 == 3 else f"{rng.normal():.3f}"
        lines.append(f"{EVIL if k == 5 else f'row-{k}'},{rng.normal():.3f},{rng.normal():.3f},{y},"
                     f"<b>{k}</b>")
    path = tmp_path_factory.mktemp("maps") / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_page_is_self_contained_and_escapes_user_data():
    ids = ["a", EVIL, "c"]
    page = map_page(np.arange(6.0).reshape(3, 2), ids, values=[1.0, np.nan, 3.0], color_label="y (eV)",
                    properties={EVIL: [1, 2, 3]}, title=EVIL)
    assert page.count("</script>") == 2 and "<!--" not in page  # the data and the script element, nothing else
    assert not re.search(r"\b(src|href)\s*=|https?://|@import", page)  # nothing loaded from elsewhere
    data = _page_data(page)
    assert data["ids"] == ids and list(data["properties"]) == [EVIL]
    assert data["values"] == [1.0, None, 3.0] and (data["vmin"], data["vmax"]) == (1.0, 3.0)
    assert script_json({"k": "\u2028&"}) == '{"k": "\\u2028\\u0026"}'


def test_hover_columns_of_structures():
    data = load("octet", "structures")
    cols = hover_columns(data.records[:3])
    assert list(cols)[:2] == ["formula", "n_atoms"] and len(cols["formula"]) == 3
    assert all(isinstance(v, (str, int, float, bool)) for col in cols.values() for v in col if v is not None)


def test_map_html_from_the_command_line(tmp_path, table, capsys):
    page = tmp_path / "map.html"
    csv = tmp_path / "map.csv"
    assert main(["map", table, "--descriptor", "columns", "--set", "columns=['a','b']", "--color", "y",
                 "--highlight", _indices(tmp_path, [1, 2]), "-o", str(page), "--csv", str(csv), "--quiet"]) == 0
    assert "(4 without a value, drawn as grey rings): " in capsys.readouterr().out
    text = page.read_text()
    data = _page_data(text)
    assert len(data["x"]) == 40 and data["ids"][5] == EVIL and data["ids"][0] == "row-0"
    assert data["values"].count(None) == 4 and data["highlight"] == [1, 2]
    assert data["color_label"] == "y (unit unknown)" and data["axis_names"][0].startswith("PC1 (no unit; ")
    assert data["properties"]["a"][0] is not None and text.count("</script>") == 2
    with open(csv, newline="", encoding="utf-8") as handle:
        xy = np.array([[float(row["x"]), float(row["y"])] for row in DictReader(handle)])
    assert np.allclose(xy, np.column_stack([data["x"], data["y"]]), rtol=1e-5, atol=1e-9)

    labels = tmp_path / "labels.html"
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color",
                 "lowest_energy_structure", "-o", str(labels), "--quiet"]) == 0
    data = _page_data(labels.read_text())
    assert [c["name"] for c in data["categories"]] == ["RS", "ZB"] and set(data["labels"]) == {0, 1}
    assert data["categories"][0]["colour"] == "#1f77b4"  # tab10, as on the PNG


def _indices(tmp_path, idx):
    path = tmp_path / "idx.txt"
    path.write_text("".join(f"{i}\n" for i in idx))
    return str(path)


def test_map_output_suffix_is_png_or_html(tmp_path, capsys):
    out = tmp_path / "map.svg"
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "Z_A",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--output must end in .png or .html (the map)" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_chemiscope_input(tmp_path, capsys):
    pytest.importorskip("chemiscope", reason="the optional chemiscope package (pip install chemiscope)")
    data = load("octet", "structures")
    path = tmp_path / "cells.extxyz"
    ase.io.write(path, data.records[:30], format="extxyz")
    out = tmp_path / "map.json.gz"
    assert main(["map", str(path), "--descriptor", "composition", "--color", "energy_per_atom",
                 "-o", str(tmp_path / "map.png"), "--chemiscope", str(out), "--quiet"]) == 0
    assert f"chemiscope input: {out}" in capsys.readouterr().out
    with gzip.open(out, "rt", encoding="utf-8") as handle:
        doc = json.load(handle)
    assert len(doc["structures"]) == 30 and doc["structures"][0]["size"] == len(data.records[0])
    props = doc["properties"]
    assert {"map x", "map y", "energy_per_atom", "formula"} <= set(props)
    assert props["energy_per_atom"]["units"] == "eV/atom" and len(props["map x"]["values"]) == 30
    assert doc["settings"]["map"]["color"] == {"property": "energy_per_atom"}

    table = tmp_path / "table.json"  # table rows: a map without structures, labels as strings
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color",
                 "lowest_energy_structure", "-o", str(tmp_path / "t.html"), "--chemiscope", str(table),
                 "--quiet"]) == 0
    doc = json.loads(table.read_text())
    assert not doc["structures"] and set(doc["properties"]["lowest_energy_structure"]["values"]) == {"RS", "ZB"}


def test_chemiscope_missing_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "chemiscope", None)  # as if it were not installed
    out, png = tmp_path / "map.json", tmp_path / "map.png"
    assert main(["map", "octet:table", "--descriptor", "columns", "--set", COLUMNS, "--color", "Z_A",
                 "-o", str(png), "--chemiscope", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install chemiscope" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not png.exists()


#: run inside the page after its own script: hover point K, click it, press "copy id"; results in data attributes
PROBE = """<script>
window.addEventListener("load", function () {
  var over = document.getElementById("map-overlay"), p = window.ml4msMap.position(K);
  var at = {clientX: p[0], clientY: p[1], bubbles: true, pointerId: 1};
  over.dispatchEvent(new PointerEvent("pointermove", at));
  var tip = document.getElementById("map-tip");
  document.body.dataset.tip = tip.hidden ? "" : tip.textContent;
  over.dispatchEvent(new PointerEvent("pointerdown", at));
  over.dispatchEvent(new PointerEvent("pointerup", at));
  document.getElementById("map-copy").click();
  document.body.dataset.selectedText = document.getElementById("map-selected").textContent;
  over.dispatchEvent(new PointerEvent("pointermove", at));
});
</script>
"""


def _chromium(tmp_path, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no browser: {CHROMIUM} is absent (apt-get install chromium)")
def test_page_in_a_browser(tmp_path, table):
    from matplotlib.image import imread

    page = tmp_path / "map.html"
    assert main(["map", table, "--descriptor", "columns", "--set", "columns=['a','b']", "--color", "y",
                 "-o", str(page), "--quiet"]) == 0
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE.replace("K", "5") + "</body>"))
    dom = _chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    main_tag = re.search(r"<main[^>]*>", dom).group(0)
    assert 'data-ready="true"' in main_tag and 'data-points-drawn="40"' in main_tag
    assert "<title>PCA of " in dom and "<title>owned" not in dom  # the script in the id did not run
    evil = EVIL
    body = re.search(r"<body[^>]*>", dom).group(0)
    shown = body.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    assert f'data-tip="id: {evil}index5' in shown and "y (unit unknown)" in shown  # hover: id and properties
    assert f'data-selected-text="selected: {evil}"' in shown
    assert re.search(r'id="map-status"[^>]*>(copied|press Ctrl\+C)', dom)  # headless: no clipboard, the fallback

    shot = tmp_path / "map.png"
    _chromium(tmp_path, "--window-size=1200,800", f"--screenshot={shot}", probed.as_uri())
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (800, 1200)
    coloured = np.ptp(pixels, axis=-1) > 0.2  # the viridis points, not the grey axes or black text
    assert 40 * 10 < coloured.sum() < 0.2 * coloured.size
