"""The schema, its migrations and the Store façade, owner of the database and image files."""
