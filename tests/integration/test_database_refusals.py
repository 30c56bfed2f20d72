"""A database the server refuses is reported with the server's own reason."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.database import open_pool
from infra.errors import DatabaseUnavailableError


def test_an_unknown_database_is_named_in_the_refusal(postgres_server_url: str):
    params = conninfo_to_dict(postgres_server_url) | {"dbname": "mentorflow_absent"}
    url = make_conninfo("", **params)

    with pytest.raises(DatabaseUnavailableError) as refused:
        open_pool(url, timeout_s=1)

    message = str(refused.value)
    assert 'database "mentorflow_absent" does not exist' in message
    assert "MENTORFLOW_POSTGRES_URL" in message


def test_a_closed_port_is_reported_as_refused(postgres_server_url: str):
    # Port 9 (discard) has no listener on the test machines.
    params = conninfo_to_dict(postgres_server_url) | {"host": "127.0.0.1", "port": "9"}

    with pytest.raises(DatabaseUnavailableError, match="refused"):
        open_pool(make_conninfo("", **params), timeout_s=1)
