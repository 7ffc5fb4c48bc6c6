"""The store: the database with its group-committing writer, the schema's migrations, cursor
pagination, and the change notices told after each commit.
"""
