"""Development stand-ins for the outside world: a payment provider and an SMTP sink."""
