"""Recordings: the files a conference's recorder writes (`files`), the one playable
file composed from them after the conference (`compose`), the background jobs that
compose (`jobs`), and their place in the database and the patient record (`store`).
The recorder itself is part of the SFU (sfu/recorder.py): it takes the router's media.
"""
