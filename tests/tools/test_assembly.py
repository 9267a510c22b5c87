"""Reading a cloud assembly: the assembly's own files, never those inside staged assets."""

from __future__ import annotations

from tools.assembly import assembly_files


def test_assembly_files_finds_nested_assemblies_files_and_skips_staged_assets(tmp_path):
    for path in (
        "manifest.json",
        "assembly-Dev/manifest.json",
        "assembly-Dev/asset.abc/manifest.json",
        "asset.def/pkg/manifest.json",
        "assembly-Dev/Dev-Data.metadata.json",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("{}")
    assert assembly_files(tmp_path, "manifest.json") == [
        tmp_path / "assembly-Dev/manifest.json",
        tmp_path / "manifest.json",
    ]
    assert assembly_files(tmp_path, "*.metadata.json") == [tmp_path / "assembly-Dev/Dev-Data.metadata.json"]
