//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`): the Engine API's parsers of
//! request bodies and queries, reachable without a server.
