-- The address a removed guest came from: newcomers from it wait for a host to let them
-- in, also after a restart. Kept with the conference's state, for its event only.

ALTER TABLE conference_people ADD COLUMN barred_address TEXT;
