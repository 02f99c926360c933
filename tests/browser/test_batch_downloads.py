"""A member opens a finished parameter sweep and downloads its PDF report and its Excel workbook from the
Download row; both files open and hold the batch."""

import io
import threading

import openpyxl
import pytest
from pypdf import PdfReader

from apps.accounts.models import Membership
from apps.batches.models import Batch
from apps.batches.selectors import combination_figures
from apps.batches.services import batch_start
from tests.batches.helpers import make_batch, run_until_done, sim_endpoint
from tests.browser.conftest import log_in
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def start_and_run(batch_id: int) -> None:
    """The start button's part, then the django-q worker's: chunk after chunk."""
    batch_start(batch=Batch.objects.get(pk=batch_id))
    run_until_done(batch_id)


def test_a_member_downloads_the_pdf_and_the_workbook(browser, asgi_server, monkeypatch):
    monkeypatch.setattr("apps.batches.services.job_submit", lambda **kwargs: None)  # the test is the worker
    membership = MembershipFactory(role=Membership.Role.MEMBER, team__name="Alpha", team__slug="alpha")
    batch = make_batch(membership.team, endpoint=sim_endpoint(membership.team), name="downloadable sweep",
                       ranges={"temperature": [0.2, 0.8, 1.4], "top_p": [0.5, 1.0]}, repetitions=2)  # fmt: skip
    # Started and run in a thread of its own, as by the page and the worker: Playwright's sync API keeps an
    # event loop running in this thread, where the start's websocket nudge (async_to_sync) cannot run.
    worker = threading.Thread(target=start_and_run, args=[batch.pk])
    worker.start()
    worker.join(timeout=60)
    batch = Batch.objects.select_related("experiment").get(pk=batch.pk)
    assert batch.experiment.status == "completed"
    figures = [f for f in combination_figures(batch, batch.objective) if f.mean is not None]
    best = max(figures, key=lambda f: (f.mean, f.results, -f.index))

    context = browser.new_context(base_url=asgi_server, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    log_in(page, membership.user.username)
    page.goto(f"/batches/{batch.pk}/")

    with page.expect_download() as pdf_download:
        page.click("#download-pdf")
    assert pdf_download.value.suggested_filename == f"batch-{batch.pk}.pdf"
    with open(pdf_download.value.path(), "rb") as file:
        pdf = PdfReader(io.BytesIO(file.read()))
    text = " ".join(" ".join(p.extract_text() for p in pdf.pages).split())
    assert "downloadable sweep" in text
    assert f"Combination {best.index}:" in text and f"{best.mean:.2f}" in text

    with page.expect_download() as xlsx_download:
        page.click("#download-xlsx")
    assert xlsx_download.value.suggested_filename == f"batch-{batch.pk}.xlsx"
    with open(xlsx_download.value.path(), "rb") as file:  # the saved file has no extension for openpyxl to go by
        workbook = openpyxl.load_workbook(io.BytesIO(file.read()))
    assert workbook.sheetnames == ["Summary", "combinations", "results"]
    assert workbook["combinations"].max_row == 1 + 6
    assert workbook["results"].max_row == 1 + 12
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True) if row[0]}
    assert summary["Best combination"] == best.index
    context.close()
