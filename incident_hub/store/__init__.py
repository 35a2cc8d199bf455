"""Storage: tables, sessions, migrations and the queries the rest of the hub uses."""
