"""SQLAlchemy models, sessions, migrations and queries of the cell database."""
