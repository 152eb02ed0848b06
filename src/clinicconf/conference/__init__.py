"""A conference's live state and rules, by concern: who is who (`identity`), who may
come in (`admission`), who is here (`presence`), what each person may see
(`visibility`), what survives a restart (`persistence`), what the conference needs of
its media (`media`, a port), and the coordinator that applies the host's intents
(`coordinator`, with the server's registry in `conferences`). Importers use these
modules directly; this package exports nothing of its own."""
