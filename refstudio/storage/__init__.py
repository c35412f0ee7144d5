"""Storage: the database (engine, migrations, tables) and the media store."""
