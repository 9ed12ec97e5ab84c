"""Load: the warehouse schema, migrations, the window writer, state and locks."""
