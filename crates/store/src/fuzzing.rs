//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`): the store's parsers of outside
//! input, reachable without a store on disk.
