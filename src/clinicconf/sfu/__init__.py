"""The selective forwarding unit: WebRTC media between the participants of a
conference, in the same process as the web server (aiortc).

- `router`: which publisher track goes to which subscriber, from the conference state
  (pure: no media).
- `forward`: how a track is carried from a publisher to its subscribers (the
  interface, and the decoded-frame relay kept as `forwarding = "transcode"`).
- `passthrough`: packet forwarding, the default: the one reach into aiortc's internals
  (`rtp` the packet format, `wire` a connection's SRTP and datagrams, `source` a
  publisher's track, `outlet` a subscriber's m-line).
- `ice`: the ICE settings (addresses, ports, STUN and TURN): the one reach into aioice.
- `peer`: one page's peer connection and its offer/answer exchange.
- `room`: a conference's peers, kept in step with the router's table.
"""
