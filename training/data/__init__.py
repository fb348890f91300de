"""Data: a corpus becomes uint16 token shards (``preparation``, ``shards``); the loop reads them as an exact-resume,
rank-strided stream and a fixed validation set (``loaders``). ``download`` fetches a public file once."""
