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
        (b"\x00\x01binary", "binary"),
        ("a,b\n1,2\n".encode(), "missing column(s)"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\n".encode(), "no rows"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx y,Xã,h1,Thôn 1\n".encode(), "line 2: commune_code 'x y'"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,Thôn 1\nx,Xã,h1,Thôn 2\n".encode(), "line 3: hamlet_code 'h1' already on line 2"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,Thôn 1\nx,Xã,H1,Thôn 2\n".encode(), "line 3: hamlet_code 'H1' already on line 2"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xã,h1,\n".encode(), "line 2: hamlet_name must be 1-200"),
        ("commune_code,commune_name,hamlet_code,hamlet_name\nx,Xa,h1,Thôn\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_bad_csv_is_refused_with_the_line(data, message):
    with pytest.raises(registry.CsvError) as err:
        registry.parse_csv(data)
    assert message in str(err.value)
