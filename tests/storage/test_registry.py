"""Importing the registry of communes and hamlets from CSV."""

from __future__ import annotations

import pytest

from storage import registry
from tests.conftest import EXAMPLE_CSV


async def test_example_registry_imports_ten_residential_groups(database):
    rows = registry.parse_csv(EXAMPLE_CSV.read_bytes())
    async with database.transaction() as session:
        assert await registry.import_rows(session, rows) == (1, 10)
    async with database.transaction() as session:
        hamlets = await registry.list_hamlets(session)
    assert len(hamlets) == 10
    assert hamlets[0] == ("ngoctrao_tdp01", "Tổ dân phố 1", "Phường Ngọc Trạo")


async def test_reimport_updates_names(database):
    rows = registry.parse_csv(EXAMPLE_CSV.read_bytes())
    async with database.transaction() as session:
        await registry.import_rows(session, rows)
    changed = EXAMPLE_CSV.read_bytes().replace("Tổ dân phố 1\n".encode(), "TDP Một\n".encode())
    async with database.transaction() as session:
        await registry.import_rows(session, registry.parse_csv(changed))
    async with database.transaction() as session:
        hamlets = dict((c, n) for c, n, _ in await registry.list_hamlets(session))
    assert hamlets["ngoctrao_tdp01"] == "TDP Một" and len(hamlets) == 10


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x01binary", [("csv_err_binary", {})]),
        ("a,b\n1,2\n".encode(), [("csv_err_columns", {"missing": "commune_code, commune_name, hamlet_code, hamlet_name",
                                                      "expected": "commune_code, commune_name, hamlet_code, hamlet_name"})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\n".encode(), [("csv_err_empty", {})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx y,Xã,h1,Thôn 1\n".encode(),
         [("csv_err_code", {"line": 2, "column": "commune_code", "value": "x y"})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,Thôn 1\nx,Xã,h1,Thôn 2\n".encode(),
         [("csv_err_duplicate", {"line": 3, "code": "h1", "first": 2})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,Thôn 1\nx,Xã,H1,Thôn 2\n".encode(),
         [("csv_err_duplicate", {"line": 3, "code": "H1", "first": 2})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,\n".encode(), [("csv_err_name", {"line": 2, "column": "hamlet_name"})]),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xa,h1,Thôn\n".encode("latin-1"), [("csv_err_encoding", {"byte": len("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xa,h1,Th")})]),
    ],
)
def test_bad_csv_is_refused_with_the_line(data, message):
    with pytest.raises(registry.CsvError) as err:
        registry.parse_csv(data)
    assert err.value.problems == message
