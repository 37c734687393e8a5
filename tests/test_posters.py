"""Hamlet posters: the PDF read back as a person would (its text and its QR codes), the command, the route."""

from __future__ import annotations

import io
import unicodedata

import pytest
import zxingcpp
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image
from pypdf import PdfReader

from bot.config import Settings
from bot.hamlets import Hamlet
from bot.posters import PosterError, handle_poster, links, make_poster
from bot.server import create_app
from bot.web.texts import load_texts
from tests.conftest import EXAMPLE_CSV
from tests.test_cli import run

HAMLET = Hamlet("ngoctrao_tdp03", "Tổ dân phố 3", "Phường Ngọc Trạo")
TELEGRAM = "https://t.me/cccd_xa_bot?start=h_ngoctrao_tdp03"
ZALO = "https://zalo.me/4412345678901234567"
WEB = "https://bot.ngoctrao.gov.vn/?h=ngoctrao_tdp03"
CONFIGURED = dict(
    telegram_bot_username="@cccd_xa_bot", zalo_url=ZALO, public_url="https://bot.ngoctrao.gov.vn/", web_chat=True
)


def read_pdf(data: bytes) -> tuple[list[str], str, set[str]]:
    """Return (page sizes, the text as one line, the QR codes' contents) of a PDF."""
    reader = PdfReader(io.BytesIO(data))
    sizes = [f"{round(float(p.mediabox.width))}x{round(float(p.mediabox.height))}" for p in reader.pages]
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    codes = set()
    for page in reader.pages:
        for image in page.images:
            for barcode in zxingcpp.read_barcodes(Image.open(io.BytesIO(image.data))):
                assert barcode.format == zxingcpp.BarcodeFormat.QRCode
                codes.add(barcode.text)
    return sizes, unicodedata.normalize("NFC", text), codes


def test_poster_is_one_a4_page_with_the_hamlet_the_steps_and_working_qr_codes(catalog):
    pdf = make_poster(HAMLET, catalog, load_texts(), Settings(_env_file=None, **CONFIGURED))
    sizes, text, codes = read_pdf(pdf)
    assert sizes == ["595x842"], "one A4 page"
    assert "Tổ dân phố 3, Phường Ngọc Trạo" in text
    for k, step in enumerate(catalog.steps, 1):
        assert f"Bước {k}. {step.title}" in text
    plain = [s for s in catalog.steps if not s.review_note]
    assert plain and all(" ".join(s.text.strip().splitlines()[0].split()) in text for s in plain), "checked steps in short"
    assert codes == {TELEGRAM, ZALO, WEB}
    assert "anh/chị chọn Tổ dân phố 3" in text, "Zalo carries no hamlet: the poster says what to pick"


def test_steps_awaiting_review_print_their_title_only(catalog):
    pdf = make_poster(HAMLET, catalog, load_texts(), Settings(_env_file=None, **CONFIGURED))
    _, text, _ = read_pdf(pdf)
    reviewed = [s for s in catalog.steps if s.review_note]
    assert reviewed, "the shipped content has steps marked for review"
    for step in reviewed:
        assert step.title in text and step.text.splitlines()[0] not in text


def test_only_configured_ways_in_are_printed(catalog):
    texts = load_texts()
    settings = Settings(_env_file=None, telegram_bot_username="cccd_xa_bot", public_url="https://bot.ngoctrao.gov.vn")
    found, missing = links(HAMLET, settings, texts)
    assert [link.url for link in found] == [TELEGRAM]
    assert missing == ["CCCD_ZALO_URL", "CCCD_WEB_CHAT"]
    _, _, codes = read_pdf(make_poster(HAMLET, catalog, texts, settings))
    assert codes == {TELEGRAM}
    with pytest.raises(PosterError) as caught:
        make_poster(HAMLET, catalog, texts, Settings(_env_file=None))
    assert texts.error(caught.value).startswith("chưa có đường dẫn nào để in mã QR: hãy đặt CCCD_TELEGRAM_BOT_USERNAME, ")


def test_poster_command(tmp_path):
    assert run(["hamlets", "import", str(EXAMPLE_CSV)], tmp_path).returncode == 0
    out = tmp_path / "tdp3.pdf"
    env = {"CCCD_TELEGRAM_BOT_USERNAME": "cccd_xa_bot", "CCCD_PUBLIC_URL": "https://bot.ngoctrao.gov.vn", "CCCD_WEB_CHAT": "1"}
    result = run(["poster", "--hamlet", "NgocTrao_TDP03", "--out", str(out)], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert "Tổ dân phố 3" in result.stdout and "CCCD_ZALO_URL" in result.stderr
    _, text, codes = read_pdf(out.read_bytes())
    assert "Tổ dân phố 3, Phường Ngọc Trạo" in text and codes == {TELEGRAM, WEB}
    unknown = run(["poster", "--hamlet", "khong_co", "--out", str(tmp_path / "x.pdf")], tmp_path, **env)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert "lỗi: không có thôn, tổ dân phố mã 'khong_co' (nhập danh sách: cccd-bot hamlets import TỆP)" in unknown.stderr
    assert not (tmp_path / "x.pdf").exists()
    bare = run(["poster", "--hamlet", "ngoctrao_tdp03", "--out", str(tmp_path / "y.pdf")], tmp_path)
    assert bare.returncode == 1 and "lỗi: chưa có đường dẫn nào để in mã QR: hãy đặt CCCD_TELEGRAM_BOT_USERNAME" in bare.stderr
    unwritable = run(["poster", "--hamlet", "ngoctrao_tdp03", "--out", str(tmp_path / "no" / "z.pdf")], tmp_path, **env)
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_poster_route(registry_loaded, db_url, catalog):
    app = create_app(Settings(_env_file=None, database_url=db_url, **CONFIGURED), catalog, registry_loaded)
    app.router.add_get("/admin/hamlets/{code}/poster.pdf", handle_poster)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/admin/hamlets/ngoctrao_tdp03/poster.pdf")
        assert resp.status == 200 and resp.content_type == "application/pdf"
        assert "ap-phich-ngoctrao_tdp03.pdf" in resp.headers["Content-Disposition"]
        _, text, codes = read_pdf(await resp.read())
        assert "Tổ dân phố 3" in text and codes == {TELEGRAM, ZALO, WEB}
        unknown = await client.get("/admin/hamlets/khong_co/poster.pdf")
        assert unknown.status == 404 and await unknown.text() == "Không có thôn, tổ dân phố mã 'khong_co'."
        assert (await client.get("/admin/hamlets/%3Cx%3E/poster.pdf")).status == 404
    bare = create_app(Settings(_env_file=None, database_url=db_url), catalog, registry_loaded)
    bare.router.add_get("/admin/hamlets/{code}/poster.pdf", handle_poster)
    async with TestClient(TestServer(bare)) as client:
        resp = await client.get("/admin/hamlets/ngoctrao_tdp03/poster.pdf")
        assert resp.status == 409
        assert (await resp.text()).startswith("Không in được áp phích: chưa có đường dẫn nào để in mã QR: hãy đặt CCCD_TELEGRAM_BOT_USERNAME")


def test_content_check_reports_a_broken_web_yaml(tmp_path):
    import shutil

    from bot.catalog import CONTENT_DIR

    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    (content / "web.yaml").write_text("messages:\n  poster_step: 'Bước {k}. {name}'\n", encoding="utf-8")
    result = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(content))
    assert result.returncode == 1
    assert "web.yaml: poster_step: chỗ điền không có: {name} (được dùng: {k}, {title})" in result.stdout
    assert "web.yaml: send: thiếu nội dung bắt buộc, hoặc nội dung đang trống" in result.stdout
    assert "unknown" not in result.stdout and "missing" not in result.stdout


def test_content_check_says_where_a_yaml_mistake_is_in_vietnamese(tmp_path):
    import shutil

    from bot.catalog import CONTENT_DIR

    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    (content / "web.yaml").write_text("messages:\n  send: 'Gửi\n  sending: [\n", encoding="utf-8")
    (content / "services.yaml").write_bytes(b"\xff\xfe\x00bad")
    result = run(["content", "check"], tmp_path, CCCD_CONTENT_DIR=str(content))
    assert result.returncode == 1
    web = next(line for line in result.stdout.splitlines() if line.startswith("web.yaml"))
    assert web.startswith("web.yaml: -: sai cú pháp YAML ở dòng ") and "kiểm tra thụt lề" in web
    assert "services.yaml: -: không đọc được: tệp không phải văn bản UTF-8" in result.stdout
