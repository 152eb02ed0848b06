-- Recordings of conferences (issue 5). The media lives in data_dir/recordings/<id>/;
-- the database holds what each recording is, where it stands and whose record it is in.

CREATE TABLE recordings (
    -- AUTOINCREMENT: an id, which names the recording's directory, is never reused.
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    INTEGER NOT NULL REFERENCES events (id),
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    -- recording: being written; composing: the one playable file is being made;
    -- ready: it is; failed: it could not be (failure says why; the tracks stay).
    state       TEXT NOT NULL DEFAULT 'recording'
                CHECK (state IN ('recording', 'composing', 'ready', 'failed')),
    -- It stopped before the conference's end: the server stopped (a crash, a power
    -- cut), or a track could not be written (interruption says why).
    interrupted INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
    interruption TEXT,
    failure     TEXT,
    progress    REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    duration_ms INTEGER,
    size_bytes  INTEGER,
    -- Who took part while it was recorded: JSON [{"participant", "name", "kind"}],
    -- participant being the id the track files are named by.
    present     TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX recordings_by_event ON recordings (event_id);

-- The patient records a recording belongs to: the event's patients, and for a
-- Public Conference the patient record it is tied to.
CREATE TABLE recording_patients (
    recording_id INTEGER NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    patient_id   INTEGER NOT NULL REFERENCES patients (id),
    PRIMARY KEY (recording_id, patient_id)
);
CREATE INDEX recording_patients_by_patient ON recording_patients (patient_id);
