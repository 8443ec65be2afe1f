//! berth's image store: content-addressed blobs, image manifests and configs, tags, unpacked
//! layers, image archives (`save`/`load`/`import`), `commit`, and garbage collection; and the
//! tar plumbing beneath them, also used on containers' trees (`cp`, `diff`): safe
//! extraction ([`unpack_into`]), packing by file descriptors ([`pack_path`]) and overlay
//! changes ([`overlay_changes`], [`write_overlay_layer`]).
//!
//! It owns everything under the state root except containers, volumes and networks. It
//! knows nothing of registries (that is `berth-distribution`), of running containers, or of
//! Dockerfiles. Layout of the state root:
//!
//! ```text
//! blobs/sha256/<hex>   verified, immutable content
//! ingest/              partial writes, renamed into blobs/ once verified
//! layers/<chain-hex>/  diff/ (an overlayfs lowerdir) + layer.json
//! locks/               flock files (see `lock`)
//! meta.db              SQLite: images, tags, repository digests
//! ```

#![warn(missing_docs)]

mod archive;
mod atomic;
mod blobs;
mod check;
mod commit;
mod compression;
mod config;
pub mod crash;
mod error;
pub mod events;
mod extend;
mod filters;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod gzip;
mod image;
mod import;
mod incoming;
mod layers;
mod listing;
mod lock;
mod meta;
mod overlay;
mod pack;
mod timearg;
mod unpack;
mod written;

#[cfg(test)]
mod test_support;

pub use archive::{ArchiveFormat, LoadedImage, SaveRequest};
pub use blobs::{BlobStore, Ingest};
pub use check::CheckReport;
pub use commit::CommitOptions;
pub use compression::{
    Compression, CompressionError, Compressor, GZIP_LEVEL, ZSTD_LEVEL, compress_gzip, compress_zstd,
};
pub use config::{History, ImageConfig, RootFs, RunConfig, host_architecture};
pub use error::{Result, StoreError};
pub use extend::Extension;
pub use filters::{FilterError, Filters, go_bool};
pub use gc::{GcReport, IMAGE_PRUNE_FILTERS, PruneReport};
pub use image::{CACHE_HOLDER_PREFIX, HistoryEntry, Image, RemoveEvent, check_layer_media_type};
pub use import::ImportOptions;
pub use incoming::{Incoming, LayerWork};
pub use layers::{LayerInfo, chain_id};
pub use listing::{IMAGE_FILTERS, ImageQuery, ListedImage};
pub use lock::{LockGuard, Locks};
pub use meta::{ImageRecord, open_sqlite, retry_busy};
pub use overlay::{Change, ChangeKind, overlay_changes, write_overlay_layer};
pub use pack::{
    PackError, PackOptions, PackStats, PathKind, PathStat, open_dir_in_root, open_file_in_root,
    pack_path, stat_in_root,
};
pub use timearg::{format_go_duration, parse_go_duration, parse_time_arg};
pub use unpack::{UnpackError, UnpackOptions, UnpackStats, unpack_into, unpack_layer};
pub use written::with_written_layer;

use std::path::{Path, PathBuf};

use crate::{atomic::ensure_dir, layers::LayerStore, meta::Meta};

/// The name of the store-wide lock: held shared by every writer that adds content, and
/// exclusively by the garbage collector while it sweeps.
const GC_LOCK: &str = "gc";

/// An open state root.
pub struct Store {
    root: PathBuf,
    blobs: BlobStore,
    layers: LayerStore,
    locks: Locks,
    meta: Meta,
    /// The event log, opened at the first event this handle records.
    events: std::cell::OnceCell<Option<events::EventLog>>,
}

impl Store {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let locks = Locks::new(root.join("locks"));
        let blobs = BlobStore::new(root);
        let layers = LayerStore::new(root, locks.clone());
        for dir in blobs.dirs() {
            ensure_dir(&dir)?;
        }
        ensure_dir(layers.dir())?;
        ensure_dir(&root.join("locks"))?;
        ensure_dir(&root.join("tmp"))?;
        // Switching a new database to WAL and creating the schema can fail with "database is
        // locked" without waiting when several processes do it at once (SQLite does not run
        // the busy handler there), so opening is serialized; it takes about a millisecond.
        let meta = {
            let _init = locks.lock_exclusive("meta-open")?;
            Meta::open(&root.join("meta.db"))?
        };
        Ok(Store {
            root: root.to_owned(),
            blobs,
            layers,
            locks,
            meta,
            events: std::cell::OnceCell::new(),
        })
    }

    /// Records an event in the state root's log (opened once per handle); a failure is
    /// logged, never returned: telling of a change never fails the change.
    pub fn record_event(&self, event: events::Event) {
        let log = self
            .events
            .get_or_init(|| match events::EventLog::open(&self.root) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::warn!("the event log cannot be opened: {e}");
                    None
                }
            });
        if let Some(log) = log
            && let Err(e) = log.append(&event)
        {
            tracing::warn!("event {} {} not recorded: {e}", event.kind, event.action);
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The state root's named locks (`locks/`), for the engine's own orderings.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// Where a layer's files are (an overlayfs lowerdir).
    pub fn layer_dir(&self, chain: &berth_reference::Digest) -> PathBuf {
        self.layers.diff_dir(chain)
    }

    /// The record of an unpacked layer.
    pub fn layer(&self, chain: &berth_reference::Digest) -> Result<Option<LayerInfo>> {
        self.layers.get(chain)
    }
}
