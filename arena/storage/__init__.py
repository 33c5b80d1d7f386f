"""The schema, its migrations and the Store façade: the one owner of the database and the image files."""
