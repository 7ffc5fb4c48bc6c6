"""The store: the database with its group-committing writer, the schema's migrations, and cursor pagination."""
