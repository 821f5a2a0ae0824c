"""Running the product: server, connection pool, embedded PostgreSQL, migrations, createuser."""
