"""The platform every cyberclaims service stands on: event contracts, Kafka plumbing,
outbox and inbox, database, settings, auth, errors and the service application factory."""
