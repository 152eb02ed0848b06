"""A conference's live state and rules, by concern: who is who (`identity`), who may
come in (`admission`), who is here (`presence`), what each person may see
(`visibility`), what survives a restart (`persistence`), what the conference needs of
its media (`media`, a port, and `roster`, the conference's side of it), the people
and pages brought together (`gathering`), the host's intents and the conference's
course (`coordinator`), and the server's registry (`conferences`). Importers use
these modules directly; this package exports nothing of its own."""
