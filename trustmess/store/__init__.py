"""All SQL: asyncpg with $n parameters, one module per aggregate."""
