-- The event's times when its conference ended (issue 13): moving the event to other
-- times that have not passed opens the conference again; any other change of the
-- event leaves it ended. NULL while it has not ended (or ended before this was kept:
-- then any change that leaves the event's end ahead opens it again).

ALTER TABLE conference_state ADD COLUMN ended_starts_at TEXT;
ALTER TABLE conference_state ADD COLUMN ended_ends_at TEXT;
