//! Sans-IO tests of the torrent core.
