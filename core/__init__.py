"""The kernel every layer imports: settings, errors, domain types, the asset catalog,
the database schema and migrations, the storage/cache/broker clients and the message
envelope. Nothing here imports from the layers above."""
