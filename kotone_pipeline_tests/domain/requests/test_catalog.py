import csv
import json
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.requests.catalog import CatalogError, Part, load_catalog, mean_vector_100

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE_CANDIDATES = (Path("/work/shared/reference"), REPO_ROOT.parent / "shared" / "reference")


def _reference_csv() -> Path | None:
    for folder in REFERENCE_CANDIDATES:
        if (folder / "catalog_parts.csv").is_file():
            return folder / "catalog_parts.csv"
    return None


def _part(part_id: str, slot: str, **values: int | None) -> dict:
    return {
        "part_id": part_id,
        "slot": slot,
        "name": part_id.title(),
        "tags": [],
        "description": "a test part",
        "values": {d: values.get(d) for d in DIMS},
    }


def _write(tmp_path: Path, parts: list[dict]) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"parts": parts}), encoding="utf-8")
    return path


def _one_per_slot() -> list[dict]:
    return [_part(f"{slot}_a", slot, energy=40) for slot in SLOTS]


def test_committed_catalog_matches_the_reference_csv():
    csv_path = _reference_csv()
    if csv_path is None:
        pytest.skip("shared/reference is not available")
    with csv_path.open(encoding="utf-8") as handle:
        reference = list(csv.DictReader(handle))
    catalog = load_catalog()
    assert [p.part_id for p in catalog.parts] == [r["part_id"] for r in reference]
    for row in reference:
        part = catalog.get(row["part_id"])
        assert part is not None
        assert (part.slot, part.name, list(part.tags)) == (row["slot"], row["name"], row["tags"].split())
        assert part.values == {d: int(row[d]) if row[d].strip() else None for d in DIMS}
        assert part.description.strip()


def test_catalog_indexes_parts_by_slot_and_id():
    catalog = load_catalog()
    assert set(catalog.by_slot) == set(SLOTS)
    assert sum(len(parts) for parts in catalog.by_slot.values()) == len(catalog.parts) == 45
    assert all(p.slot == slot for slot, parts in catalog.by_slot.items() for p in parts)
    assert catalog.get("mood_rain_ambience").name == "Rain Ambience"
    assert catalog.get("no_such_part") is None


def test_mean_vector_averages_defined_values_and_uses_50_when_none():
    a = Part.model_validate(_part("style_a", "style", energy=40, warmth=70))
    b = Part.model_validate(_part("mood_b", "mood", energy=61))
    # energy: (40 + 61) / 2; warmth: only a defines it; the other dims: nobody -> 50.
    assert mean_vector_100([a, b]) == [50.5, 70.0, 50.0, 50.0, 50.0, 50.0]


def test_load_rejects_a_duplicate_id_naming_the_file(tmp_path):
    parts = _one_per_slot() + [_part("style_a", "style")]
    path = _write(tmp_path, parts)
    with pytest.raises(CatalogError, match=r"catalog\.json.*duplicate part id.*style_a"):
        load_catalog(path)


def test_load_rejects_a_missing_slot(tmp_path):
    path = _write(tmp_path, [p for p in _one_per_slot() if p["slot"] != "gimmick"])
    with pytest.raises(CatalogError, match=r"catalog\.json.*no part for slot.*gimmick"):
        load_catalog(path)


def test_load_rejects_values_outside_0_100(tmp_path):
    parts = _one_per_slot()
    parts[1]["values"]["warmth"] = 101
    with pytest.raises(CatalogError, match=r"catalog\.json.*parts\.1\.values.*warmth: 101 is out of range"):
        load_catalog(_write(tmp_path, parts))


def test_load_rejects_an_unknown_slot_and_a_missing_dim(tmp_path):
    parts = _one_per_slot()
    parts[0]["slot"] = "tempo"
    with pytest.raises(CatalogError, match="unknown slot 'tempo'"):
        load_catalog(_write(tmp_path, parts))
    parts = _one_per_slot()
    del parts[2]["values"]["nostalgia"]
    with pytest.raises(CatalogError, match="nostalgia"):
        load_catalog(_write(tmp_path, parts))


def test_load_reports_bad_json_with_file_and_line(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text('{\n  "parts": [\n  oops\n]}', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog\.json:3: invalid JSON"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "missing.json")


def test_data_dir_can_be_redirected(tmp_path, monkeypatch):
    _write(tmp_path, _one_per_slot())
    monkeypatch.setenv("KOTONE_DATA_DIR", str(tmp_path))
    assert [p.part_id for p in load_catalog().parts] == [f"{s}_a" for s in SLOTS]
