"""The stores every backend-parametrised test runs on; ``supabase`` is SupabaseStore's real
client against PostgREST's contract (``tests/store/fake_postgrest.py``) over real PostgreSQL."""

from __future__ import annotations

import pytest

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("supabase", marks=pytest.mark.postgres),
]
