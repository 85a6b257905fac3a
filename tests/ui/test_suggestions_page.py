"""The import outcome page offers a changed upload's suggested renames as
one click: the upload form with options.column_map filled in."""

from __future__ import annotations

import html
import re
from typing import Any

from tests.api.test_schema_suggestions import ROWS, _csv
from tests.api.test_schema_suggestions import table as table  # noqa: F401  (the fixture)
from tests.conftest import import_csv
from tests.ui.conftest import sign_in


def test_the_outcome_page_offers_the_mapping_in_one_click(
    browser_client: Any,
    admin: dict[str, str],
    table: str,  # noqa: F811  (the fixture)
) -> None:
    c = browser_client
    job = import_csv(c, admin, table, _csv("cust_id,amount,city", ROWS), filename="t.csv")
    sign_in(c)
    page = c.get(f"/datasets/{table}/jobs/{job['id']}/outcome").text
    assert 'id="suggestions"' in page and "<code>cust_id</code> is <code>customer_id</code>" in page
    link = re.search(r'id="apply-suggestions" href="([^"]+)"', page)
    assert link is not None
    form = c.get(html.unescape(link.group(1))).text
    box = re.search(r'<textarea id="o-json"[^>]*>([^<]*)</textarea>', form)
    assert box is not None
    assert html.unescape(box.group(1)) == '{"column_map": {"cust_id": "customer_id"}}'
