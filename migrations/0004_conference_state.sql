-- A conference's live state, written as it changes, so that a server that restarts
-- (a crash, an upgrade) takes each conference up where it was: started or not, the
-- host's options, and each person's moderation and whether they are kept out.

CREATE TABLE conference_state (
    event_id   INTEGER PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    started_at TEXT,
    ended_by   TEXT CHECK (ended_by IN ('host', 'time')),
    options    TEXT NOT NULL             -- JSON: moderator, recording, locked, waiting_room
);

CREATE TABLE conference_people (
    event_id     INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- staff:<id> or patient:<id>; a guest's browser key only as its SHA-256.
    person_key   TEXT NOT NULL,
    public_id    TEXT NOT NULL,
    permission   TEXT NOT NULL,
    shown        INTEGER NOT NULL CHECK (shown IN (0, 1)),
    -- The close code they are kept out with (removed, turned away), if they are.
    barred       INTEGER,
    -- A guest once let in from the waiting room comes back without waiting.
    let_in       INTEGER NOT NULL DEFAULT 0 CHECK (let_in IN (0, 1)),
    PRIMARY KEY (event_id, person_key)
);
